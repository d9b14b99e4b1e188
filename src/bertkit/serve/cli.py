"""``bertkit serve``: flags, the listening socket, uvicorn, and an exit status of 0 on SIGTERM.

The socket is bound before the model loads, so a port in use is a one-line error at once.
uvicorn stops accepting on SIGTERM or SIGINT, lets the requests in flight finish, then the app's
lifespan closes the batch queue; unlike uvicorn's own runner the process then exits 0 instead of
re-raising the signal.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bertkit.errors import BertkitError

logger = logging.getLogger("bertkit.serve")

__all__ = ["ServeArgs", "ServeError", "bind", "run_serve", "serve_in_thread"]


class ServeError(BertkitError, RuntimeError):
    """The server cannot start: the extra is missing, the port is taken."""


@dataclass
class ServeArgs:
    """Serve a model over HTTP: TEI-compatible /embed, /rerank, /predict ..., OpenAI-compatible
    /v1/embeddings, /health, /info and Prometheus /metrics; concurrent requests share batches."""

    model: Path = field(metadata={"help": "model directory in Hugging Face layout"})
    task: str = field(default="auto", metadata={
        "help": "auto (from config.json's architectures), feature-extraction, "
                "text-classification, rerank, fill-mask, token-classification, "
                "question-answering"})
    host: str = field(default="127.0.0.1", metadata={
        "help": "address to listen on (0.0.0.0 to accept other machines)"})
    port: int = field(default=8080, metadata={"min": 0, "help": "TCP port (0: any free one)"})
    backend: Literal["torch", "onnx"] = field(default="torch", metadata={
        "help": "torch, or onnx (model.onnx from bertkit export --format onnx)"})
    pooling: Literal["mean", "cls"] = field(default="mean", metadata={
        "help": "sentence vectors of /embed and /v1/embeddings"})
    max_batch_tokens: int = field(default=16384, metadata={
        "min": 1, "help": "padded tokens of queued requests gathered into one round"})
    model_batch_tokens: int = field(default=0, metadata={
        "min": 0, "help": "padded tokens per forward pass: a round's inputs, sorted by length, "
                          "run in batches of this size (0: 2048 on a CPU, where small batches "
                          "measured fastest, 16384 on a GPU)"})
    max_concurrent_requests: int = field(default=512, metadata={
        "min": 1, "help": "requests served at once; more get 429 with Retry-After"})
    max_client_batch_size: int = field(default=32, metadata={
        "min": 1, "help": "inputs per request; more get 413"})
    payload_limit: int = field(default=2_000_000, metadata={
        "min": 1, "help": "bytes per request body; more get 413"})
    api_key: str | None = field(default=None, metadata={
        "help": "require 'Authorization: Bearer KEY' (401 without it); /health stays open"})
    threads: int = field(default=0, metadata={
        "min": 0, "help": "torch CPU threads (0: torch's default)"})


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; ServeError naming the port when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ServeError(f"--port {port} on {host}: cannot listen ({e.strerror or e}); is "
                         "another server using it?") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _uvicorn_server(app: Any, sock: socket.socket) -> Any:
    """A uvicorn Server whose signal handling ends in a normal return (exit 0)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = (signal.SIGINT, signal.SIGTERM)
            old = {s: signal.signal(s, self.handle_exit) for s in sigs}
            try:
                yield
            finally:
                for s, h in old.items():
                    signal.signal(s, h)

    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=60, lifespan="on")
    return Server(config)


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 30.0) -> Iterator[int]:
    """Serve ``app`` from a background thread (tests, notebooks); yields the port, and on exit
    shuts the server down as SIGTERM would (requests in flight finish)."""
    sock = bind(host, port)
    server = _uvicorn_server(app, sock)
    server.config.log_level = "warning"
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="bertkit-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(f"the server on port {sock.getsockname()[1]} did not start")
            time.sleep(0.02)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def _require_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise ServeError(f"bertkit serve needs FastAPI and uvicorn ({e.name} is missing): "
                         "pip install \"bertkit[serve]\"") from None


def run_serve(args: ServeArgs) -> int:
    """Bind, load the model, serve until SIGTERM/SIGINT; 0 after a graceful shutdown."""
    _require_extra()
    import torch

    from bertkit.serve.app import create_app
    from bertkit.serve.service import Limits, Service

    if args.threads:
        torch.set_num_threads(args.threads)
    sock = bind(args.host, args.port)
    try:
        limits = Limits(args.max_batch_tokens, args.max_concurrent_requests,
                        args.max_client_batch_size, args.payload_limit,
                        model_batch_tokens=args.model_batch_tokens)
        service = Service(args.model, args.task, args.backend, limits, args.pooling)
        app = create_app(service, args.api_key)
        host, port = sock.getsockname()[:2]
        if args.api_key is None and host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning("listening on %s without --api-key: anyone who reaches this port "
                           "can use the model", host)
        logger.info("listening on http://%s:%d (%s)", host, port,
                    ", ".join(service.endpoints()))
        _uvicorn_server(app, sock).run(sockets=[sock])
        service.close()
    finally:
        sock.close()
    logger.info("stopped")
    return 0
