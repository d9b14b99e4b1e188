"""The plain recipe: FastAPI + transformers, one model call per request, no shared batching.

What a user writes in an afternoon: ``transformers.AutoModel`` and ``AutoTokenizer``, mean
pooling over the attention mask, L2 norm, an OpenAI-style ``POST /v1/embeddings``
(``{"input": str | [str]}`` -> ``{"data": [{"embedding", "index"}]}``) and ``GET /health``. The
endpoint is a plain ``def``, so FastAPI runs each request in its thread pool; every request is its
own padded batch. A peer for ``benchmarks/bench_serve.py``, not part of bertkit.

    python benchmarks/plain_server.py --model DIR [--port 8081] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import torch
import transformers
import uvicorn
from fastapi import Body, FastAPI, HTTPException


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) states, (B, T) mask -> (B, H) mean of the real tokens' states."""
    m = mask.unsqueeze(-1).to(hidden.dtype)                       # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def create_app(model_dir: str) -> FastAPI:
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir).eval()
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    def embeddings(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise HTTPException(422, "input: expected a string or a list of strings")
        enc = tokenizer(texts, padding=True, truncation=True, max_length=512,
                        return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**enc).last_hidden_state                # (B, T, H)
        vecs = torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1)
        return {"object": "list", "model": model_dir,
                "data": [{"object": "embedding", "index": i, "embedding": v}
                         for i, v in enumerate(vecs.tolist())]}

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app(args.model), host=args.host, port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
