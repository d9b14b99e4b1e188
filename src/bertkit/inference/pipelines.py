"""``bertkit.pipeline(task, model=DIR)``: text in, task answers out, for any backend.

Notation: N inputs, T tokens, H hidden, C classes, V vocab, K choices, n chosen layers.

Every pipeline tokenizes, builds unpadded inputs (:class:`~bertkit.inference.batcher.Encoded`),
runs them through a backend in token-budget batches (:func:`~bertkit.inference.batcher.run_features`)
and post-processes the outputs. One input (a str, a pair, a dict) gives one result; a list gives a
list. Inputs longer than ``max_length`` are **windowed** as in fine-tuning, never cut silently:

- feature-extraction, token-classification: windows of ``max_length - 2`` pieces ``stride`` apart
  (default half); each piece's outputs come from the window where it has the most context
  (Google's ``run_squad.py`` score), so the stitched sequence is as long as the text.
- text-classification / rerank: the windows' logits are averaged (``aggregate_classification``).
- question-answering: doc-stride windows and Google's post-processing (:mod:`bertkit.finetune.qa`).
- fill-mask and multiple-choice raise ValueError naming the input unless ``truncate=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bertkit.inference.batcher import Encoded, run_features

logger = logging.getLogger(__name__)

__all__ = ["BiEncoderRerankPipeline", "FeatureExtractionPipeline", "FillMaskPipeline", "MultipleChoicePipeline", "Pipeline",
           "QuestionAnsweringPipeline", "RerankPipeline", "SentenceSimilarityPipeline",
           "TextClassificationPipeline", "TokenClassificationPipeline", "pipeline"]


class Pipeline:
    """Shared state: the backend, the tokenizer, the config and the batching limits."""

    task = ""

    def __init__(self, backend: Any, tokenizer: Any, config: Any, *, max_length: int = 512,
                 stride: int | None = None, truncate: bool = False,
                 max_batch_tokens: int | None = None, batch_size: int | None = None,
                 progress: bool = False, **options: Any) -> None:
        if options:
            raise TypeError(f"{self.task}: unknown option(s) {', '.join(sorted(options))}")
        limit = getattr(config, "max_position_embeddings", 512)
        lo = 2 if truncate else 3  # windows need room for one piece besides the special tokens
        if not lo <= max_length <= limit:
            raise ValueError(f"max_length: {max_length} is outside {lo}..{limit} "
                             "(the model's max_position_embeddings)")
        if stride is not None and stride < 1:
            raise ValueError(f"stride: must be >= 1 token, got {stride}")
        self.backend, self.tokenizer, self.config = backend, tokenizer, config
        self.max_length, self.stride, self.truncate = max_length, stride, truncate
        if max_batch_tokens is None:  # 2,048 on a CPU, 16,384 on a GPU
            from bertkit.inference.batcher import default_batch_tokens

            max_batch_tokens = default_batch_tokens(getattr(backend, "device", "cpu"))
        self.max_batch_tokens, self.batch_size, self.progress = (max_batch_tokens, batch_size,
                                                                 progress)
        self.options: dict[str, Any] = {}  # what pipeline() was given (for replace)

    def replace(self, **changes: Any) -> Pipeline:
        """The same task on the same loaded backend with some options changed (no reload):
        ``pipe.replace(max_length=64, truncate=True)``."""
        new = type(self)(self.backend, self.tokenizer, self.config,
                         **{**self.options, **changes})
        new.options = {**self.options, **changes}
        return new

    def run(self, items: Sequence[Encoded]) -> list[dict[str, Tensor]]:
        """Backend outputs per item, in order (token outputs padded to their batch's T)."""
        return run_features(self.backend, items, self.tokenizer.pad_token_id,
                            self.max_batch_tokens, self.batch_size,
                            "token_type_ids" in self.backend.input_names, self.progress,
                            self.task)

    def labels(self) -> list[str]:
        """Class names from the config's ``id2label`` (``LABEL_i`` when absent)."""
        from bertkit.models.heads import label_names

        return label_names(self.config)

    # -- windows of one text ---------------------------------------------------------------

    def _windows(self, n: int) -> tuple[list[tuple[int, int]], np.ndarray]:
        """``(start, length)`` windows over ``n`` pieces and each piece's max-context window."""
        from bertkit.finetune.qa import _doc_windows, _max_context_owner

        budget = self.max_length - 2
        stride = max(1, budget // 2) if self.stride is None else min(self.stride, budget)
        spans = _doc_windows(n, budget, stride) or [(0, 0)]
        return spans, _max_context_owner(spans, n)

    def _text_windows(self, ids: list[int], what: str) -> tuple[list[Encoded], np.ndarray,
                                                               list[tuple[int, int]]]:
        """``start piece-window end`` inputs of one text in the family's template (one input
        when the text fits or ``truncate``)."""
        budget = self.max_length - 2
        if len(ids) > budget and self.truncate:
            ids = ids[:budget]
        spans, owner = self._windows(len(ids))
        if len(spans) > 1:
            logger.info("%s: %d tokens make %d windows of %d", what, len(ids) + 2, len(spans),
                        self.max_length)
        items = [Encoded(self.tokenizer.build_inputs(ids[s:s + k])[0]) for s, k in spans]
        return items, owner, spans

    def _all_windows(self, encoded: Sequence[tuple[list[int], Any]]
                     ) -> tuple[list[Encoded], list[tuple[int, int, np.ndarray,
                                                          list[tuple[int, int]]]]]:
        """Every text's window inputs in one list, and per text (first item, item count,
        owner, spans) to stitch its rows back."""
        items: list[Encoded] = []
        plan = []
        for i, (ids, _) in enumerate(encoded):
            feats, owner, spans = self._text_windows(ids, f"inputs[{i}]")
            plan.append((len(items), len(feats), owner, spans))
            items += feats
        return items, plan


def _stitch(rows: Sequence[Tensor], owner: np.ndarray, spans: Sequence[tuple[int, int]]
            ) -> Tensor:
    """Per-window token outputs (T_w, ...) -> (n + 2, ...) for the whole text: the start token
    from the first window, piece ``i`` from window ``owner[i]``, the end token from the last."""
    n = len(owner)
    if len(rows) == 1:
        return rows[0][:n + 2]
    idx = torch.as_tensor(owner, dtype=torch.long)
    pos = torch.arange(n) - torch.tensor([spans[w][0] for w in owner.tolist()]) + 1
    width = max(k for _, k in spans) + 2
    stacked = rows[0].new_zeros((len(rows), width, *rows[0].shape[1:]))     # (W, T, ...)
    for w, (r, (_, k)) in enumerate(zip(rows, spans, strict=True)):
        stacked[w, :k + 2] = r[:k + 2]  # rows come padded to their own batch's T
    last = spans[-1][1] + 1
    return torch.cat([rows[0][:1], stacked[idx, pos], rows[-1][last:last + 1]])


def _single(inputs: Any) -> bool:
    """One input (a str, a (text, pair) tuple or a dict) rather than a list of them."""
    return isinstance(inputs, str | dict | tuple)


def _check_texts(texts: Sequence[Any], what: str = "inputs") -> None:
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}]: expected a str, got {type(t).__name__}")


# ----------------------------------------------------------------------------- embeddings


class FeatureExtractionPipeline(Pipeline):
    """Sentence vectors (pooled) or per-token states, of the last layer or chosen ``layers``.

    ``pipe(texts)`` -> (N, H) mean-pooled vectors (``pooling``: mean, cls, pooler, None for
    per-token (T_i, H) states); with ``layers`` (Google's indexes, -1 = last) a layer axis:
    (N, n, H) or (T_i, n, H). ``normalize`` L2-normalises pooled vectors.
    """

    task = "feature-extraction"

    def __init__(self, backend: Any, tokenizer: Any, config: Any, *,
                 layers: Sequence[int] | None = None, **kw: Any) -> None:
        super().__init__(backend, tokenizer, config, **kw)
        from bertkit.inference.encode import hidden_state_indices

        self.layer_indices = (None if layers is None else
                              hidden_state_indices(layers, config.num_hidden_layers))

    def _states(self, texts: Sequence[str]) -> tuple[list[Tensor], list[Tensor | None]]:
        """Stitched token states per text, (T_i, H) or (T_i, n, H), and the pooler outputs
        (None for a windowed text)."""
        _check_texts(texts)
        encoded = self.tokenizer.encode_batch_with_offsets(list(texts))
        items, plan = self._all_windows(encoded)
        rows = self.run(items)
        states, pooled = [], []
        for first, count, owner, spans in plan:
            outs = rows[first:first + count]
            if self.layer_indices is None:
                per = [o["last_hidden_state"] for o in outs]                     # (T, H)
            else:
                if "hidden_states" not in outs[0]:
                    raise ValueError("layers: this backend returns no hidden states; pass "
                                     "layers to pipeline() so that it is loaded with them")
                per = [o["hidden_states"][self.layer_indices].transpose(0, 1)    # (T, n, H)
                       for o in outs]
            states.append(_stitch(per, owner, spans))
            pooled.append(outs[0].get("pooler_output") if count == 1 else None)
        return states, pooled

    def __call__(self, inputs: str | Sequence[str], pooling: str | None = "mean",
                 normalize: bool = False) -> Tensor | list[Tensor]:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if pooling not in ("mean", "cls", "pooler", None):
            raise ValueError(f"pooling: {pooling!r}; use mean, cls, pooler or None")
        if pooling == "pooler" and self.layer_indices is not None:
            raise ValueError("pooling: 'pooler' reads only the last layer; drop layers")
        states, pooled = self._states(texts)
        if pooling is None:
            return states[0] if isinstance(inputs, str) else states
        vecs = []
        for i, (s, p) in enumerate(zip(states, pooled, strict=True)):
            if pooling == "mean":
                vecs.append(s.mean(0))
            elif pooling == "cls":
                vecs.append(s[0])
            else:
                if p is None:
                    raise ValueError(f"inputs[{i}]: pooling 'pooler' needs a model with a pooler "
                                     f"and an input of at most max_length={self.max_length} "
                                     "tokens (or truncate=True)")
                vecs.append(p)
        out = torch.stack(vecs) if vecs else torch.empty(0, self.config.hidden_size)
        if normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out[0] if isinstance(inputs, str) else out


class SentenceSimilarityPipeline(FeatureExtractionPipeline):
    """Bi-encoder cosine similarity: ``pipe(source, sentences)`` -> (len(sentences),) scores."""

    task = "sentence-similarity"

    def __call__(self, source: str, sentences: str | Sequence[str],  # type: ignore[override]
                 pooling: str = "mean") -> Tensor:
        many = [sentences] if isinstance(sentences, str) else list(sentences)
        vecs = super().__call__([source, *many], pooling=pooling, normalize=True)
        assert isinstance(vecs, Tensor)
        return vecs[1:] @ vecs[0]


class BiEncoderRerankPipeline(SentenceSimilarityPipeline):
    """``rerank`` on a model without a classification head: ``pipe(query, texts)`` ->
    ``[{"index", "score"}]`` by cosine similarity, best first."""

    task = "rerank"

    def __call__(self, query: str, texts: Sequence[str],  # type: ignore[override]
                 pooling: str = "mean") -> list[dict[str, Any]]:
        _check_texts([query, *texts], "query and texts")
        scores = super().__call__(query, list(texts), pooling).numpy()
        order = np.argsort(-scores, kind="stable")
        return [{"index": int(i), "score": float(scores[i])} for i in order]


# ----------------------------------------------------------------------------- fill-mask


class FillMaskPipeline(Pipeline):
    """``pipe(f"Paris is the {mask} of France.", top_k=5)`` (``mask`` the tokenizer's mask token) -> the ``top_k`` best fillers, as
    transformers' fill-mask: dicts of ``score``, ``token``, ``token_str``, ``sequence``; a text
    with several masks gives a list per mask."""

    task = "fill-mask"

    def _ids(self, text: str, i: int) -> list[int]:
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            raise ValueError("fill-mask: the tokenizer has no mask token")
        mask = self.tokenizer.convert_ids_to_tokens([mask_id])[0]
        parts = text.split(mask)
        if len(parts) < 2:
            raise ValueError(f"inputs[{i}]: no {mask} in {text!r:.60}")
        ids: list[int] = []
        for k, part_ids in enumerate(self.tokenizer.encode_batch(parts)):
            ids += ([mask_id] if k else []) + part_ids
        full = self.tokenizer.build_inputs(ids)[0]
        if len(full) > self.max_length:
            if not self.truncate:
                raise ValueError(f"inputs[{i}]: {len(full)} tokens, more than max_length="
                                 f"{self.max_length}; pass truncate=True to cut it")
            full = full[:self.max_length - 1] + [full[-1]]
            if mask_id not in full:
                raise ValueError(f"inputs[{i}]: truncation to {self.max_length} tokens cut the "
                                 "mask")
        return full

    def __call__(self, inputs: str | Sequence[str], top_k: int = 5) -> list[Any]:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        _check_texts(texts)
        if top_k < 1:
            raise ValueError(f"top_k: must be >= 1, got {top_k}")
        rows = [self._ids(t, i) for i, t in enumerate(texts)]
        outs = self.run([Encoded(r) for r in rows])
        results = []
        for ids, out in zip(rows, outs, strict=True):
            per_mask = []
            for p in [k for k, x in enumerate(ids) if x == self.tokenizer.mask_token_id]:
                probs = torch.softmax(out["logits"][p].double(), -1)              # (V,)
                scores, tokens = probs.topk(min(top_k, probs.numel()))
                per_mask.append([self._fill(ids, p, int(t), float(s))
                                 for s, t in zip(scores, tokens, strict=True)])
            results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
        return results[0] if isinstance(inputs, str) else results

    def _fill(self, ids: list[int], pos: int, token: int, score: float) -> dict[str, Any]:
        filled = list(ids)
        filled[pos] = token
        return {"score": score, "token": token,
                "token_str": self.tokenizer.decode([token]),
                "sequence": clean_spaces(self.tokenizer.decode(filled))}


_GLUED = (" .", " ?", " !", " ,")


def clean_spaces(text: str) -> str:
    """Remove the space that decoding puts before ``. ? ! ,``, as transformers' WordPiece
    decoder does token by token (``"france ."`` -> ``"france."``; ``"it ' s"`` stays)."""
    for glued in _GLUED:
        text = text.replace(glued, glued[1:])
    return text


# ----------------------------------------------------------------------------- classification


def _pairs(inputs: Any) -> list[tuple[str, str | None]]:
    """A str, a (text, pair) tuple, a {"text", "text_pair"} dict, or a list of them."""
    items = [inputs] if _single(inputs) else list(inputs)
    out: list[tuple[str, str | None]] = []
    for i, x in enumerate(items):
        if isinstance(x, str):
            out.append((x, None))
        elif isinstance(x, tuple) and len(x) == 2 and all(isinstance(t, str) for t in x):
            out.append((x[0], x[1]))
        elif isinstance(x, dict) and isinstance(x.get("text"), str) \
                and isinstance(x.get("text_pair"), str | None):
            out.append((x["text"], x.get("text_pair")))
        else:
            raise TypeError(f"inputs[{i}]: expected a str, a (text, text_pair) tuple or a dict "
                            f"with 'text' (and 'text_pair'), got {x!r:.60}")
    return out


class TextClassificationPipeline(Pipeline):
    """``pipe(text)`` or ``pipe((text, pair))`` -> ``{"label", "score"}`` (``top_k=None``: every
    label, best first). Probabilities as transformers: softmax over C > 1 classes, sigmoid for
    one output, the raw value for ``problem_type == "regression"``."""

    task = "text-classification"

    def logits(self, pairs: Sequence[tuple[str, str | None]]) -> np.ndarray:
        """(N, C) logits; a long input's windows averaged."""
        from bertkit.data.glue import Example
        from bertkit.finetune.features import aggregate_classification, encode_classification

        examples = [Example(a, b, None, str(i)) for i, (a, b) in enumerate(pairs)]
        mode = "truncate" if self.truncate else "window"
        feats = encode_classification(examples, self.tokenizer, None, self.max_length, mode,
                                      self.stride)
        outs = self.run([Encoded(f.input_ids, f.token_type_ids) for f in feats])
        logits = torch.stack([o["logits"] for o in outs]).double().numpy()
        return aggregate_classification(feats, logits, len(examples))

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """(N, C) logits -> (N, C) probabilities (see the class doc)."""
        if self.config.extra.get("problem_type") == "regression":
            return logits
        if logits.shape[-1] == 1 or self.config.extra.get("problem_type") == \
                "multi_label_classification":
            return 1.0 / (1.0 + np.exp(-logits))
        return torch.softmax(torch.from_numpy(logits), -1).numpy()

    def __call__(self, inputs: Any, top_k: int | None = 1) -> Any:
        pairs = _pairs(inputs)
        if not pairs:
            return []
        probs = self.scores(self.logits(pairs))
        names = self.labels()
        results: list[Any] = []
        for p in probs:
            ranked = sorted(((names[c], float(p[c])) for c in range(len(p))),
                            key=lambda x: -x[1])
            best = [{"label": n, "score": s} for n, s in ranked[:top_k]]
            results.append(best[0] if top_k == 1 else best)
        return results[0] if _single(inputs) else results


class RerankPipeline(TextClassificationPipeline):
    """Cross-encoder reranking: ``pipe(query, texts)`` -> ``[{"index", "score"}]`` best first.

    The score is the relevance probability: sigmoid of a single logit, else the probability of
    the last class.
    """

    task = "rerank"

    def __call__(self, query: str, texts: Sequence[str]) -> list[dict[str, Any]]:  # type: ignore[override]
        _check_texts([query, *texts], "query and texts")
        if not texts:
            return []
        probs = self.scores(self.logits([(query, t) for t in texts]))[:, -1]
        order = np.argsort(-probs, kind="stable")
        return [{"index": int(i), "score": float(probs[i])} for i in order]


# ----------------------------------------------------------------------------- tokens


def _tag(entity: str) -> tuple[str, str]:
    """``B-PER`` -> (B, PER); ``I-PER`` or ``PER`` -> (I, PER)."""
    if entity[:2] in ("B-", "I-"):
        return entity[0], entity[2:]
    return "I", entity


def group_entities(tokens: Sequence[dict[str, Any]], pieces_to_text: Any) -> list[dict[str, Any]]:
    """Adjacent tokens of one type merged (transformers' ``aggregation_strategy="simple"``).

    A token joins the group before it when their types match and it is not a ``B-`` tag; a group
    has the first type, the mean score, the joined word and the span from first start to last end.
    """
    groups: list[list[dict[str, Any]]] = []
    for tok in tokens:
        bi, tag = _tag(tok["entity"])
        if groups and bi != "B" and _tag(groups[-1][-1]["entity"])[1] == tag:
            groups[-1].append(tok)
        else:
            groups.append([tok])
    return [{"entity_group": _tag(g[0]["entity"])[1],
             "score": float(np.mean([t["score"] for t in g])),
             "word": pieces_to_text([t["word"] for t in g]),
             "start": g[0]["start"], "end": g[-1]["end"]} for g in groups]


class TokenClassificationPipeline(Pipeline):
    """``pipe(text)`` -> entities: with ``aggregation_strategy="simple"`` (the default) dicts of
    ``entity_group``, ``score``, ``word``, ``start``, ``end`` as transformers groups them; with
    ``"none"`` one dict per word piece (``entity``, ``score``, ``index``, ``word``, ``start``,
    ``end``). Tokens tagged ``O`` are left out."""

    task = "token-classification"

    def __call__(self, inputs: str | Sequence[str], aggregation_strategy: str = "simple",
                 ignore_labels: Sequence[str] = ("O",)) -> Any:
        if aggregation_strategy not in ("simple", "none"):
            raise ValueError(f"aggregation_strategy: {aggregation_strategy!r}; use simple or none")
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        _check_texts(texts)
        encoded = self.tokenizer.encode_batch_with_offsets(texts)
        items, plan = self._all_windows(encoded)
        rows = self.run(items)
        names = self.labels()
        results = []
        for text, (ids, offsets), (first, count, owner, spans) in zip(texts, encoded, plan,
                                                                      strict=True):
            logits = _stitch([r["logits"] for r in rows[first:first + count]], owner, spans)
            probs = torch.softmax(logits[1:len(owner) + 1].double(), -1)    # (n, C) pieces only
            tokens = self._tokens(text, ids, offsets, probs, names)
            if aggregation_strategy == "simple":
                tokens = group_entities(tokens, self._join)
                results.append([t for t in tokens if t["entity_group"] not in ignore_labels])
            else:
                results.append([t for t in tokens if t["entity"] not in ignore_labels])
        return results[0] if isinstance(inputs, str) else results

    def _tokens(self, text: str, ids: list[int], offsets: list[tuple[int, int]], probs: Tensor,
                names: list[str]) -> list[dict[str, Any]]:
        pieces = self.tokenizer.convert_ids_to_tokens(ids)
        out = []
        for k, (piece, (s, e)) in enumerate(zip(pieces, offsets, strict=False)):
            if k >= len(probs):
                break
            c = int(probs[k].argmax())
            word = text[s:e] if ids[k] == self.tokenizer.unk_token_id else piece
            out.append({"entity": names[c], "score": float(probs[k, c]), "index": k + 1,
                        "word": word, "start": s, "end": e})
        return out

    def _join(self, pieces: Sequence[str]) -> str:
        """Word pieces -> text as transformers' ``convert_tokens_to_string`` (WordPiece: joined
        by spaces, then ``" ##"`` removed)."""
        return clean_spaces(" ".join(pieces).replace(" ##", "").strip())


# ----------------------------------------------------------------------------- QA and choices


class QuestionAnsweringPipeline(Pipeline):
    """``pipe(question=..., context=...)`` -> ``{"answer", "score", "nbest"}`` from doc-stride
    windows and the fine-tuning post-processing (Google's ``write_predictions``).

    ``version_2=True`` lets the null answer win (``answer == ""``) as in SQuAD 2.0.
    """

    task = "question-answering"

    def __init__(self, backend: Any, tokenizer: Any, config: Any, *, doc_stride: int = 128,
                 max_query_length: int = 64, n_best_size: int = 20, max_answer_length: int = 30,
                 version_2: bool = False, **kw: Any) -> None:
        kw.setdefault("max_length", 384)
        super().__init__(backend, tokenizer, config, **kw)
        self.doc_stride, self.max_query_length = doc_stride, max_query_length
        self.n_best_size, self.max_answer_length = n_best_size, max_answer_length
        self.version_2 = version_2

    def predictions(self, questions: Sequence[str], contexts: Sequence[str]) -> Any:
        """:class:`~bertkit.finetune.qa.QAPredictions` keyed by the input's index as a str."""
        from bertkit.data.squad import make_example
        from bertkit.finetune.qa import convert_examples, postprocess

        _check_texts([*questions, *contexts], "questions and contexts")
        examples = [make_example(str(i), q, c, []) for i, (q, c) in
                    enumerate(zip(questions, contexts, strict=True))]
        feats = convert_examples(examples, self.tokenizer, self.max_length, self.doc_stride,
                                 self.max_query_length)
        outs = self.run([Encoded(f.input_ids, f.token_type_ids) for f in feats])
        return postprocess(examples, feats, [o["start_logits"] for o in outs],
                           [o["end_logits"] for o in outs], n_best_size=self.n_best_size,
                           max_answer_length=self.max_answer_length, version_2=self.version_2,
                           do_lower_case=getattr(self.tokenizer, "do_lower_case", True))

    def __call__(self, question: str | Sequence[str], context: str | Sequence[str],
                 top_k: int = 5) -> Any:
        one = isinstance(question, str)
        qs = [question] if isinstance(question, str) else list(question)
        cs = [context] if isinstance(context, str) else list(context)
        if len(cs) == 1 and len(qs) > 1:
            cs = cs * len(qs)
        if len(qs) != len(cs):
            raise ValueError(f"context: {len(cs)} contexts for {len(qs)} questions")
        preds = self.predictions(qs, cs)
        out = []
        for i in range(len(qs)):
            qid = str(i)
            if qid in preds.no_span:
                out.append({"answer": "", "score": 0.0, "nbest": [], "no_span": True})
                continue
            answer = preds.predictions[qid]
            nbest = preds.nbest[qid]
            score = next((x["probability"] for x in nbest if x["text"] == answer), 0.0)
            out.append({"answer": answer, "score": score, "nbest": nbest[:top_k]})
        return out[0] if one else out


class MultipleChoicePipeline(Pipeline):
    """``pipe({"context": ..., "choices": [...]})`` -> ``{"choice", "scores"}`` (softmax over the
    K choices)."""

    task = "multiple-choice"

    def __call__(self, inputs: dict[str, Any] | Sequence[dict[str, Any]]) -> Any:
        from bertkit.data.multiple_choice import MultipleChoiceExample
        from bertkit.finetune.features import encode_multiple_choice

        items = [inputs] if isinstance(inputs, dict) else list(inputs)
        examples = []
        for i, x in enumerate(items):
            choices = x.get("choices") if isinstance(x, dict) else None
            if not isinstance(x, dict) or not isinstance(x.get("context"), str) \
                    or not isinstance(choices, list) or not choices \
                    or not all(isinstance(c, str) for c in choices):
                raise TypeError(f"inputs[{i}]: expected a dict with 'context' (str) and "
                                f"'choices' (a non-empty list of str), got {x!r:.60}")
            examples.append(MultipleChoiceExample(str(i), x["context"], "", tuple(choices), None))
        feats = encode_multiple_choice(examples, self.tokenizer, self.max_length)
        if not self.truncate:
            self._check_lengths(examples)
        outs = self.run([Encoded(f.input_ids, f.token_type_ids) for f in feats])
        results = []
        for o in outs:
            p = torch.softmax(o["logits"].double(), -1)
            results.append({"choice": int(p.argmax()), "scores": p.tolist()})
        return results[0] if isinstance(inputs, dict) else results

    def _check_lengths(self, examples: Sequence[Any]) -> None:
        for i, ex in enumerate(examples):
            for c in ex.choices:
                n = len(self.tokenizer.encode(ex.context, c))
                if n > self.max_length:
                    raise ValueError(f"inputs[{i}]: context + choice make {n} tokens, more than "
                                     f"max_length={self.max_length}; pass truncate=True to cut")


# ----------------------------------------------------------------------------- the factory


_NEEDS = {"base": "last_hidden_state", "masked-lm": "logits", "sequence-classification": "logits",
          "token-classification": "logits", "question-answering": "start_logits",
          "multiple-choice": "logits"}


def _check_outputs(runner: Any, head: str, name: str) -> None:
    """A backend that lists its outputs up front (an ONNX graph) must give what ``head`` needs."""
    have = tuple(getattr(runner, "output_names", ()) or ())
    if have and _NEEDS[head] not in have:
        raise ValueError(f"backend {name!r}: the graph's outputs {list(have)} lack "
                         f"{_NEEDS[head]!r}, which the {head} head gives; export the model "
                         "with that head")


def pipeline(task: str, model: str | Path, device: str = "cpu", backend: str = "torch",
             **options: Any) -> Pipeline:
    """A ready pipeline for ``task`` on the model directory ``model`` (HF layout).

    ``backend`` is looked up in :data:`bertkit.inference.backends.BACKENDS` (``torch``, ``onnx``
    with ``onnx_file=``, ``threads=`` and ``memory_arena=``). Options: ``max_length``, ``stride``, ``truncate``,
    ``max_batch_tokens``, ``batch_size``, ``progress``, and per task ``layers``
    (feature-extraction), ``doc_stride``, ``version_2`` ... (question-answering).
    ``rerank`` on a model without a classification head is bi-encoder cosine similarity.

    >>> pipe = pipeline("feature-extraction", model="all-MiniLM-L6-v2")   # doctest: +SKIP
    >>> pipe(["a sentence", "another"]).shape                             # doctest: +SKIP
    torch.Size([2, 384])
    """
    from bertkit.config import AutoConfig
    from bertkit.inference.backends import load_backend
    from bertkit.inference.tasks import task_of_model, task_spec
    from bertkit.models.heads import check_model_dir
    from bertkit.tokenization import AutoTokenizer

    spec = task_spec(task)
    check_model_dir(model, "model", fine_tuned=False)
    config = AutoConfig.from_pretrained(model)
    cls = globals()[spec.pipeline]
    if spec.name == "rerank" and task_of_model(config)[0].name != "text-classification":
        spec, cls = task_spec("sentence-similarity"), BiEncoderRerankPipeline
    tokenizer = AutoTokenizer.from_pretrained(model)
    backend_options = {k: options.pop(k) for k in ("onnx_file", "threads", "memory_arena")
                       if k in options}
    if options.get("layers") is not None:
        backend_options["output_hidden_states"] = True
    runner = load_backend(backend, model, head=spec.head, device=device, **backend_options)
    _check_outputs(runner, spec.head, backend)
    options.setdefault("max_length", min(spec.max_length, config.max_position_embeddings))
    pipe = cls(runner, tokenizer, config, **options)
    pipe.options = options
    return pipe
