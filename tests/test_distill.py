"""``bertkit distill`` (general distillation): the loss against transformers' models computed the
reference distiller's way, learning on real text, exact resume after SIGKILL, bad input."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from bertkit.distill import general as G
from bertkit.distill.losses import DistillError, LossWeights
from bertkit.train import checkpoint as C
from bertkit.train import pretrain as P


@pytest.fixture(scope="session")
def teacher_dir(tiny_data, pretrain_args, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-layer, 128-wide BERT with its MLM head, pre-trained for 60 steps on the SOTU shards
    and exported (vocab.txt included): a teacher that knows a little English."""
    root = tmp_path_factory.mktemp("teacher")
    args = pretrain_args(root / "run", config="L-4_H-128", max_steps=60, warmup_steps=6,
                         batch_size=16, save_every=60, log_every=20)
    assert P.run_pretrain(args) == 0
    assert P.run_export(P.ExportArgs(checkpoint=str(root / "run"), out=str(root / "model"))) == 0
    return root / "model"


@pytest.fixture(scope="session")
def distill_args(tiny_data, teacher_dir: Path):
    """Factory ``(out, **overrides) -> DistillArgs``: 2 of the teacher's 4 layers, 8 CPU steps."""

    def make(out: Path, **kw) -> G.DistillArgs:
        base = dict(data=str(tiny_data["train"]), out=str(out), teacher=str(teacher_dir),
                    student_layers="0,2", batch_size=8, max_steps=8, lr=1e-3, warmup_steps=2,
                    log_every=1, eval_every=0, save_every=4, threads=1, progress=False,
                    device="cpu")
        base.update(kw)
        return G.DistillArgs(**base)

    return make


@pytest.fixture(scope="session")
def narrow_student(teacher_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A student config.json: 2 layers, 64 wide (the teacher: 128), the teacher's 2 heads and
    vocabulary; trained from scratch."""
    cfg = json.loads((teacher_dir / "config.json").read_text(encoding="utf-8"))
    cfg.update(num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=256)
    path = tmp_path_factory.mktemp("narrow") / "student.json"
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


def _train_records(run: str | Path) -> list[dict]:
    return [r for r in P.read_metrics(run) if r["split"] == "train"]


# ----------------------------------------------------------------------------- the loss


def test_loss_equals_the_reference_distillers_with_transformers_models(tiny_data, teacher_dir,
                                                                     tmp_path: Path) -> None:
    """bertkit's loss (logits only at the masked positions) equals the three losses computed
    with transformers' BertForMaskedLM the way the reference distiller does (full vocabulary
    logits at every position, the loss restricted to the masked tokens)."""
    transformers = pytest.importorskip("transformers")
    from bertkit.data.shards import PretrainingDataset
    from bertkit.distill.student import build_student

    teacher = G.load_teacher(teacher_dir)
    student = build_student(teacher, (1, 3))
    with torch.no_grad():  # make the student differ from the teacher's layers
        for p in student.parameters():
            p.add_(0.02 * torch.randn_like(p))
    student.save_pretrained(tmp_path / "student")
    batch = PretrainingDataset(tiny_data["train"], seed=0).batch(list(range(8)))
    weights = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    counts = G.distill_counts(batch)
    ours = G.general_loss(student.eval(), teacher, batch, counts, weights)

    ref = {}
    hf_t = transformers.BertForMaskedLM.from_pretrained(teacher_dir).eval()
    hf_s = transformers.BertForMaskedLM.from_pretrained(tmp_path / "student").eval()
    kw = dict(input_ids=batch["input_ids"], attention_mask=batch["input_mask"],
              token_type_ids=batch["segment_ids"], output_hidden_states=True)
    with torch.no_grad():
        t_out, s_out = hf_t(**kw), hf_s(**kw)
    labels = torch.full_like(batch["input_ids"], -100)  # (B, T): the masked tokens' ids
    for b in range(labels.shape[0]):
        for pos, tok, w in zip(batch["masked_lm_positions"][b], batch["masked_lm_ids"][b],
                               batch["masked_lm_weights"][b], strict=True):
            if w > 0:
                labels[b, pos] = tok
    mask = labels.ne(-100)
    s_logits, t_logits = s_out.logits[mask], t_out.logits[mask]     # (N, V) from (B, T, V)
    T = weights.temperature
    ref["ce_loss"] = F.kl_div(F.log_softmax(s_logits / T, -1), F.softmax(t_logits / T, -1),
                              reduction="batchmean") * T ** 2
    ref["mlm_loss"] = F.cross_entropy(s_out.logits.flatten(0, 1), labels.flatten())
    real = batch["input_mask"].bool()
    s_h, t_h = s_out.hidden_states[-1][real], t_out.hidden_states[-1][real]
    ref["cos_loss"] = F.cosine_embedding_loss(s_h, t_h, torch.ones(len(s_h)))
    ref["loss"] = 5 * ref["ce_loss"] + 2 * ref["mlm_loss"] + ref["cos_loss"]
    assert ref["ce_loss"] > 1e-3 and ref["cos_loss"] > 1e-4  # the student is not the teacher
    for k, v in ref.items():
        torch.testing.assert_close(ours[k], v, rtol=1e-4, atol=1e-6, msg=k)


def test_layer_transfer_terms_equal_the_losses_module_on_both_models_outputs(
        tiny_data, teacher_dir, narrow_student) -> None:
    """With --alpha-hidden and --alpha-attn on, the loss is 5 KL + 2 MLM + 3 hidden MSE +
    0.5 attention KL, each computed here by hand from the two models' own outputs (hidden
    states, attention probabilities) with the losses module, on the default pairs of a 2-layer
    student under a 4-layer teacher (uniform map: hidden 0:0,1:2,2:4, attention 0:1,1:3), the
    student's 64-wide states through the 64 -> 128 projection. The shares of two half batches
    sum to the whole batch's loss, and the gradient reaches the projection."""
    from bertkit.config import AutoConfig
    from bertkit.data.shards import PretrainingDataset
    from bertkit.distill.losses import attention_kl_loss, hidden_mse_loss
    from bertkit.distill.transfer import attach_projection, resolve_transfer
    from bertkit.models.auto import AutoModelForMaskedLM

    torch.manual_seed(0)
    teacher = G.load_teacher(teacher_dir)
    student = AutoModelForMaskedLM.from_config(AutoConfig.from_json_file(narrow_student)).eval()
    proj = attach_projection(student, 64, 128)
    flags = G.DistillArgs(alpha_hidden=3.0, alpha_attn=0.5)
    transfer = resolve_transfer(flags, teacher.config, student.config, None)
    assert transfer.hidden_pairs == ((0, 0), (1, 2), (2, 4))
    assert transfer.attn_pairs == ((0, 1), (1, 3))
    batch = PretrainingDataset(tiny_data["train"], seed=0).batch(list(range(8)))
    batch["input_mask"][:3, -9:] = 0  # the shards are packed: pad 3 rows by hand
    batch["input_ids"][:3, -9:] = teacher.config.pad_token_id
    batch["masked_lm_weights"][batch["masked_lm_positions"] >= 23] = 0  # no mask in padding
    weights = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=0.0, temperature=2.0)
    counts = G.distill_counts(batch)
    ours = G.general_loss(student, teacher, batch, counts, weights, transfer, proj)

    kw = dict(input_ids=batch["input_ids"], attention_mask=batch["input_mask"],
              token_type_ids=batch["segment_ids"], masked_lm_positions=batch["masked_lm_positions"],
              output_hidden_states=True, output_attentions=True)
    s_out = student(**kw)
    with torch.no_grad():
        t_out = teacher(**kw)
    real, w = batch["input_mask"], batch["masked_lm_weights"].bool()
    s_logits, t_logits = s_out.mlm_logits[w], t_out.mlm_logits[w]            # (N, V)
    T = weights.temperature
    ref = {"ce_loss": F.kl_div(F.log_softmax(s_logits / T, -1), F.softmax(t_logits / T, -1),
                               reduction="batchmean") * T ** 2,
           "mlm_loss": F.cross_entropy(s_logits, batch["masked_lm_ids"][w]),
           "hidden_loss": hidden_mse_loss(s_out.hidden_states, t_out.hidden_states,
                                          [(0, 0), (1, 2), (2, 4)], proj, real),
           "attn_loss": attention_kl_loss(s_out.attentions, t_out.attentions, [(0, 1), (1, 3)],
                                          real)}
    ref["loss"] = (5 * ref["ce_loss"] + 2 * ref["mlm_loss"] + 3 * ref["hidden_loss"]
                   + 0.5 * ref["attn_loss"])
    assert ref["hidden_loss"] > 1e-2 and ref["attn_loss"] > 1e-3
    assert ours.keys() == ref.keys()
    for k, v in ref.items():
        torch.testing.assert_close(ours[k], v, rtol=1e-5, atol=1e-6, msg=k)

    halves = [G.general_loss(student, teacher, {k: v[i:i + 4] for k, v in batch.items()},
                             counts, weights, transfer, proj) for i in (0, 4)]
    for k in ("hidden_loss", "attn_loss", "loss"):
        torch.testing.assert_close(halves[0][k] + halves[1][k], ours[k], rtol=1e-5, atol=1e-6,
                                   msg=k)
    ours["loss"].backward()
    assert proj.proj.weight.grad is not None and proj.proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("layers, hidden, attn", [
    (None, "0:0,1:1,2:3", "0:0,1:2"),      # every other layer: 0,2
    ("1,3", "0:0,1:2,2:4", "0:1,1:3"),
    ("0,1,3", "0:0,1:1,2:2,3:4", "0:0,1:1,2:3")])
def test_default_pairs_follow_the_layers_the_student_was_copied_from(
        layers, hidden: str, attn: str, distill_args, teacher_dir, tmp_path: Path) -> None:
    """Student layer i (copied from teacher layer L[i]) pairs with L[i]: hidden state i + 1 with
    L[i] + 1 (and the embeddings with the embeddings), attention layer i with L[i]."""
    from bertkit.distill.transfer import parse_pairs

    args = distill_args(tmp_path / "run", student_layers=layers, alpha_hidden=1.0,
                        alpha_attn=1.0)
    teacher = G.load_teacher(teacher_dir)
    student, _ = G.build_distill_student(args, teacher)
    got = G._transfer(args, teacher, student)
    assert got.hidden_pairs == parse_pairs(hidden, "x")
    assert got.attn_pairs == parse_pairs(attn, "x")


def test_default_flags_leave_the_distilbert_run_as_it_was(distill_args, tmp_path: Path,
                                                          monkeypatch) -> None:
    """--alpha-hidden 0 --alpha-attn 0 (the defaults): no attention probabilities are asked for
    (every attention runs SDPA), hidden states only for the cosine, no projection in the
    checkpoint, and only DistilBERT's terms logged."""
    import bertkit.models.bert as B

    calls: list[tuple[bool, bool]] = []
    sdpa = []
    run_layers, real_sdpa = B.run_layers, F.scaled_dot_product_attention

    def spy(x, mask, layers, pooler, output_hidden_states=False, output_attentions=False):
        calls.append((output_hidden_states, output_attentions))
        return run_layers(x, mask, layers, pooler, output_hidden_states, output_attentions)

    def count_sdpa(*a, **k):
        sdpa.append(1)
        return real_sdpa(*a, **k)

    monkeypatch.setattr(B, "run_layers", spy)
    monkeypatch.setattr(F, "scaled_dot_product_attention", count_sdpa)
    args = distill_args(tmp_path / "run", max_steps=2, save_every=2, alpha_hidden=0.0,
                        alpha_attn=0.0)
    assert G.run_distill(args) == 0
    assert calls and set(calls) == {(True, False)}  # student and teacher, every step
    assert len(sdpa) == 3 * len(calls)  # per step: 2 student + 4 teacher layers, 2 calls
    recs = _train_records(args.out)
    assert {k for k in recs[-1] if k.endswith("_loss")} == {"ce_loss", "mlm_loss", "cos_loss"}
    ck = C.load_checkpoint(C.checkpoint_dir(args.out, 2))
    assert not [k for k in ck["model"] if k.startswith("train_aux.")]
    calls.clear()
    cos_off = distill_args(tmp_path / "run2", max_steps=1, save_every=1, alpha_cos=0.0)
    assert G.run_distill(cos_off) == 0
    assert set(calls) == {(False, False)}


# ----------------------------------------------------------------------------- runs


def test_student_learns_from_the_teacher_on_real_text(distill_args, tiny_data,
                                                      tmp_path: Path) -> None:
    """A fresh 2-layer student (preset, random init) moves towards the teacher: its KL to the
    teacher and its total loss fall; the run exports as a model directory."""
    from bertkit.models.auto import AutoModelForMaskedLM

    args = distill_args(tmp_path / "run", student="L-2_H-128", student_layers=None,
                        max_steps=40, log_every=1, save_every=40, eval_every=40,
                        eval_data=str(tiny_data["eval"]), eval_batches=4)
    assert G.run_distill(args) == 0
    recs = _train_records(args.out)
    assert [r["step"] for r in recs] == list(range(1, 41))
    first = sum(r["ce_loss"] for r in recs[:5]) / 5
    last = sum(r["ce_loss"] for r in recs[-5:]) / 5
    assert last < 0.7 * first, (first, last)
    assert sum(r["loss"] for r in recs[-5:]) < sum(r["loss"] for r in recs[:5])
    ev = [r for r in P.read_metrics(args.out) if r["split"] == "eval"]
    assert ev and 0 <= ev[-1]["masked_lm_accuracy"] <= 1
    summary = json.loads((Path(args.out) / "summary.json").read_text(encoding="utf-8"))
    teacher = G.load_teacher(args.teacher)
    assert summary["teacher_params"] == sum(p.numel() for p in teacher.parameters())
    assert summary["student_params"] < summary["teacher_params"]
    assert summary["student_masked_lm_accuracy"] == ev[-1]["masked_lm_accuracy"]
    assert summary["accuracy_share_kept"] == pytest.approx(
        ev[-1]["masked_lm_accuracy"] / summary["teacher_masked_lm_accuracy"])
    assert summary["train_tokens_per_s"] > 0
    assert P.run_export(P.ExportArgs(checkpoint=args.out, out=str(tmp_path / "model"))) == 0
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "model")
    assert model.config.num_hidden_layers == 2 and (tmp_path / "model" / "vocab.txt").is_file()


_KILL_AFTER_SAVE = """
import os, signal, sys
from bertkit.train import checkpoint as C
from bertkit.distill import general as G
orig = C.save_checkpoint
def save_then_die(run, step, *a, **k):
    path = orig(run, step, *a, **k)
    if step == {step}:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
C.save_checkpoint = save_then_die
sys.exit(G.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("terms", ["distilbert", "layer-transfer"])
def test_exact_resume_after_sigkill(terms: str, distill_args, narrow_student, pretrain_flags,
                                    tmp_path: Path) -> None:
    """2N steps straight == SIGKILL after the checkpoint at N, then resumed (student dropout on),
    bitwise: losses, weights and optimizer state. ``layer-transfer``: a 64-wide student with
    hidden-state MSE through the learned projection (checkpointed, resumed, not exported) and
    attention transfer."""
    n = 4
    kw = {} if terms == "distilbert" else dict(
        student=str(narrow_student), student_layers=None, alpha_cos=0.0, alpha_hidden=2.0,
        alpha_attn=1.0)
    straight = distill_args(tmp_path / "straight", max_steps=2 * n, save_every=n, **kw)
    assert G.run_distill(straight) == 0
    killed = replace(straight, out=str(tmp_path / "killed"), resume="auto")
    script = textwrap.dedent(_KILL_AFTER_SAVE.format(step=n))
    proc = subprocess.run([sys.executable, "-c", script, *pretrain_flags(killed)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [s for s, _ in C.list_checkpoints(killed.out)] == [n]
    assert G.run_distill(killed) == 0
    terms_logged = {"distilbert": ["loss", "ce_loss", "mlm_loss", "cos_loss"],
                    "layer-transfer": ["loss", "ce_loss", "mlm_loss", "hidden_loss", "attn_loss"]}
    want = [[r["step"]] + [r[k] for k in terms_logged[terms]] for r in
            _train_records(straight.out)]
    got = [[r["step"]] + [r[k] for k in terms_logged[terms]] for r in _train_records(killed.out)]
    assert got == want and len(want) == 2 * n
    a = C.load_checkpoint(C.checkpoint_dir(straight.out, 2 * n))
    b = C.load_checkpoint(C.checkpoint_dir(killed.out, 2 * n))
    assert a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    aux = sorted(k for k in a["model"] if k.startswith("train_aux."))
    if terms == "distilbert":
        assert aux == []
        return
    # the projection 64 -> 128 was trained (moved from its init) and is in the optimizer
    assert aux == ["train_aux.hidden_projection.proj.bias", "train_aux.hidden_projection.proj.weight"]
    assert a["model"][aux[1]].shape == (128, 64)
    first = C.load_checkpoint(C.checkpoint_dir(straight.out, n))
    assert not torch.equal(first["model"][aux[1]], a["model"][aux[1]])
    from bertkit.config import AutoConfig
    from bertkit.models.auto import AutoModelForMaskedLM

    shell = AutoModelForMaskedLM.from_config(AutoConfig.from_json_file(narrow_student))
    G._freeze_unused(shell)
    trainable = sum(p.requires_grad for p in shell.parameters())
    assert len(a["optimizer"]["state"]) == trainable + 2  # the student's + the projection's
    assert P.run_export(P.ExportArgs(checkpoint=killed.out, out=str(tmp_path / "model"))) == 0
    from safetensors.torch import load_file

    exported = load_file(tmp_path / "model" / "model.safetensors")
    assert not [k for k in exported if "train_aux" in k or "projection" in k]
    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "model")
    ours = model.state_dict()
    assert {k: v for k, v in b["model"].items() if not k.startswith("train_aux.")}.keys() == \
        ours.keys()
    for k, v in ours.items():
        assert torch.equal(v, b["model"][k]), k
    other = replace(straight, out=str(tmp_path / "other"), alpha_hidden=0.0,
                    resume=str(C.checkpoint_dir(straight.out, n)))
    with pytest.raises(DistillError, match="the checkpoint has a hidden-state projection but "
                                           r"this run \(--alpha-hidden 0\) does not need one"):
        G.run_distill(other)
    assert not Path(other.out).exists()


@pytest.mark.parametrize("terms", ["distilbert", "layer-transfer"])
def test_two_gloo_processes_equal_one(terms: str, distill_args, narrow_student, pretrain_flags,
                                      tmp_path: Path) -> None:
    """torchrun with 2 processes (gloo, DDP student, unwrapped teacher) gives the losses of one
    process with the same global batch, to rounding: 1e-5 relative; the KL term (~0.005 while
    the student is close to the teacher, a difference of near-equal numbers) to 1e-6 absolute,
    1e-7 of the total loss. ``layer-transfer``: the hidden projection, used outside the DDP
    student's forward, still has its gradients averaged over the ranks (else the ranks' copies
    drift apart and the losses after step 1 differ)."""
    import os

    kw = {} if terms == "distilbert" else dict(
        student=str(narrow_student), student_layers=None, alpha_cos=0.0, alpha_hidden=2.0,
        alpha_attn=1.0)
    single = distill_args(tmp_path / "single", max_steps=6, dropout=0.0, save_every=6, **kw)
    assert G.run_distill(single) == 0
    ddp = replace(single, out=str(tmp_path / "ddp"))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "bertkit.distill.general",
                           *pretrain_flags(ddp)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    want, got = _train_records(single.out), _train_records(ddp.out)
    assert [r["step"] for r in got] == [r["step"] for r in want] == list(range(1, 7))
    for a, b in zip(got, want, strict=True):
        keys = ("loss", "ce_loss", "mlm_loss", "cos_loss") if terms == "distilbert" else (
            "loss", "ce_loss", "mlm_loss", "hidden_loss", "attn_loss")
        for k in keys:
            tol = {"abs": 1e-6} if k == "ce_loss" else {"rel": 1e-5}
            assert a[k] == pytest.approx(b[k], **tol), (a["step"], k)


# ----------------------------------------------------------------------------- bad input


def _other_vocab_dir(teacher_dir: Path, root: Path) -> Path:
    """The teacher's weights with another vocab.txt (its last token renamed)."""
    other = root / "other-vocab"
    shutil.copytree(teacher_dir, other)
    lines = (teacher_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    (other / "vocab.txt").write_text("\n".join(lines[:-1] + ["zzzz"]) + "\n", encoding="utf-8")
    return other


_BAD_TRANSFER = {  # case: (flags, the error's words)
    "pairs-malformed": (dict(alpha_hidden=1.0, hidden_pairs="0:0,1-2"),
                        "--hidden-pairs '0:0,1-2': '1-2' is not a pair STUDENT:TEACHER"),
    "pairs-range": (dict(alpha_hidden=1.0, hidden_pairs="0:0,3:4"),
                    "--hidden-pairs pair 3:4 is out of range: the student has indices 0..2, "
                    "the teacher 0..4"),
    "attn-range": (dict(alpha_attn=1.0, attn_pairs="1:4"),
                   "--attn-pairs pair 1:4 is out of range: the student has indices 0..1, the "
                   "teacher 0..3"),
    "pairs-no-weight": (dict(attn_pairs="1:3"), "--attn-pairs 1:3 is given but --alpha-attn is 0"),
    "weight-no-pairs": (dict(alpha_hidden=1.0, student="L-6_H-128", student_layers=None),
                        "6 layers, more than the teacher's 4: no default layer map; give "
                        "--hidden-pairs"),
    "fsdp-projection": (dict(alpha_hidden=1.0, alpha_cos=0.0, student="L-2_H-256",
                             student_layers=None, fsdp=True), "drop --fsdp"),
    "task-transfer": (dict(task="classification", alpha_attn=1.0),
                      "general distillation only, not with --task"),
    "attn-heads": (dict(alpha_attn=1.0, alpha_cos=0.0, student="L-2_H-256", student_layers=None),
                   "the student has 4 heads and the teacher 2; pass --alpha-attn 0"),
}


@pytest.mark.parametrize("case", ["no-teacher", "no-mlm-head", "student-vocab", "data-vocab",
                                  "layers-range", "layers-order", "width-cos", *_BAD_TRANSFER])
def test_bad_input_is_refused_before_anything_is_written(case: str, distill_args, teacher_dir,
                                                         tmp_path: Path) -> None:
    from bertkit.models.auto import AutoModel

    out = tmp_path / "run"
    args = distill_args(out)
    if case == "no-teacher":
        args, match = replace(args, teacher=str(tmp_path / "missing")), "no such model directory"
    elif case == "no-mlm-head":
        AutoModel.from_pretrained(teacher_dir).save_pretrained(tmp_path / "base")
        shutil.copy(teacher_dir / "vocab.txt", tmp_path / "base" / "vocab.txt")
        args, match = replace(args, teacher=str(tmp_path / "base")), "no masked-LM head"
    elif case == "student-vocab":
        other = _other_vocab_dir(teacher_dir, tmp_path)
        args = replace(args, student=str(other), student_layers=None)
        match = "vocab.txt differs from the teacher's"
    elif case == "data-vocab":
        other = _other_vocab_dir(teacher_dir, tmp_path)
        args, match = replace(args, teacher=str(other)), "another vocabulary than the teacher"
    elif case == "layers-range":
        args, match = replace(args, student_layers="0,4"), "layer 4 is out of range.*0..3"
    elif case == "layers-order":
        args, match = replace(args, student_layers="2,1"), "not strictly increasing"
    elif case in _BAD_TRANSFER:
        flags, words = _BAD_TRANSFER[case]
        args, match = replace(args, **flags), re.escape(words)
    else:
        args = replace(args, student="L-2_H-256", student_layers=None)
        match = "width is 256 and the teacher's 128; pass --alpha-cos 0"
    with pytest.raises(DistillError, match=match):
        G.run_distill(args)
    assert not out.exists()


def test_cli_reports_bad_input_in_one_line(distill_args, tmp_path: Path, capsys) -> None:
    from bertkit.cli import main

    args = distill_args(tmp_path / "run", student_layers="0,9")
    code = main(["distill", "--data", args.data, "--teacher", args.teacher, "--student-layers",
                 "0,9", "--out", args.out, "--device", "cpu"])
    assert code == 2
    assert "bertkit distill: error: --student-layers 0,9: layer 9 is out of range" in \
        capsys.readouterr().err
    assert not Path(args.out).exists()


def test_mlm_alone_needs_no_teacher_and_cpu_minutes_stops_a_run(distill_args, tiny_data,
                                                              tmp_path: Path) -> None:
    """``--alpha-ce 0 --alpha-cos 0`` is the same student trained with MLM alone: its loss is the
    student's masked-LM cross-entropy and the teacher is never run (None here). ``--cpu-minutes``
    stops a run long before ``--max-steps``, then evaluates (``cpu_s`` logged) and saves."""
    from bertkit.data.shards import PretrainingDataset

    teacher = G.load_teacher(distill_args(tmp_path / "x").teacher)
    batch = next(iter(torch.utils.data.DataLoader(PretrainingDataset(tiny_data["train"]),
                                                  batch_size=4)))
    counts = G.distill_counts(batch)
    got = G.general_loss(teacher, None, batch, counts, LossWeights(0.0, 1.0, 0.0, 2.0))
    with torch.no_grad():
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["input_mask"],
                         token_type_ids=batch["segment_ids"],
                         masked_lm_positions=batch["masked_lm_positions"]).mlm_logits
    ce = F.cross_entropy(logits.flatten(0, 1), batch["masked_lm_ids"].flatten(),
                         reduction="none")
    w = batch["masked_lm_weights"].flatten().float()
    torch.testing.assert_close(got["loss"].detach(), (ce * w).sum() / w.sum(), rtol=1e-6,
                               atol=1e-6)

    args = distill_args(tmp_path / "run", alpha_ce=0.0, alpha_cos=0.0, max_steps=100000,
                        save_every=100000, cpu_minutes=0.02, eval_data=str(tiny_data["eval"]),
                        eval_batches=2, log_every=1)
    assert G.run_distill(args) == 0
    steps = [r["step"] for r in _train_records(args.out)]
    assert 1 <= steps[-1] < 100000
    ev = [r for r in P.read_metrics(args.out) if r["split"] == "eval"]
    assert ev[-1]["step"] == steps[-1] and ev[-1]["cpu_s"] >= 0.02 * 60
    assert C.list_checkpoints(Path(args.out))[-1][0] == steps[-1]
