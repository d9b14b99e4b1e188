"""Pre-training: optimizers, schedule, exact resume, faults and export (tiny models, real text)."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from bertkit.train import checkpoint as C
from bertkit.train import pretrain as P
from bertkit.train.optim import (
    AdamW,
    Lamb,
    WarmupDecay,
    build_scheduler,
    param_groups,
    uncorrected_peak,
)

# ----------------------------------------------------------------------------- helpers


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in P.read_metrics(run) if r["split"] == "train"]


# ----------------------------------------------------------------------------- optimizers


def _params(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(5, 3, generator=g)), nn.Parameter(torch.randn(4, generator=g))]


def _run_opt(opt: torch.optim.Optimizer, params: list[nn.Parameter], steps: int = 5) -> None:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


def test_adamw_with_bias_correction_equals_torch_adamw() -> None:
    a, b = _params(), _params()
    kw = dict(lr=1e-2, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.1)
    _run_opt(AdamW(a, bias_correction=True, **kw), a)
    _run_opt(torch.optim.AdamW(b, **kw), b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)


def test_adamw_google_variant_hand_computed() -> None:
    """Google's AdamWeightDecay: raw moments, p -= lr * (m / (sqrt(v) + eps) + wd * p)."""
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdamW([p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01)
    grads = [torch.tensor([0.5, -1.0]), torch.tensor([0.2, 0.3])]
    want, m, v = torch.tensor([1.0, -2.0], dtype=torch.float64), 0.0, 0.0
    for gr in grads:
        p.grad = gr.clone()
        opt.step()
        g64 = gr.double()
        m = 0.9 * m + 0.1 * g64
        v = 0.999 * v + 0.001 * g64 ** 2
        want = want - 0.1 * (m / (v.sqrt() + 1e-6) + 0.01 * want)
    torch.testing.assert_close(p.detach().double(), want, rtol=1e-6, atol=1e-6)
    # first step without bias correction moves by lr * 0.1 g / (sqrt(0.001) |g|) ~ 3.16 lr
    p2 = nn.Parameter(torch.tensor([0.0]))
    p2.grad = torch.tensor([1.0])
    AdamW([p2], lr=1.0, weight_decay=0.0).step()
    assert p2.item() == pytest.approx(-0.1 / (math.sqrt(0.001) + 1e-6), rel=1e-5)


def test_uncorrected_peak_is_the_largest_update_of_googles_adam() -> None:
    """The multiplier the pretrain warning quotes is what Google's AdamW really does to a steady
    gradient under warmup: the largest step over lr, measured on the optimizer itself."""
    for warmup in (1, 30, 100, 3000):
        p = nn.Parameter(torch.zeros(1, dtype=torch.float64))
        opt = AdamW([p], lr=1e-3, weight_decay=0.0, eps=0.0)
        sched = build_scheduler(opt, warmup, 10**9, decay="constant")
        biggest = 0.0
        for _ in range(warmup + 3000):
            before = p.item()
            p.grad = torch.ones(1, dtype=torch.float64)
            opt.step()
            sched.step()
            biggest = max(biggest, abs(p.item() - before) / 1e-3)
        assert uncorrected_peak(warmup) == pytest.approx(biggest, rel=1e-9)
    # hand values: 6.6x near step 10 without warmup; with warmup 100 the peak is right after it
    assert uncorrected_peak(0) == pytest.approx(max((1 - 0.9**t) / math.sqrt(1 - 0.999**t)
                                                    for t in range(1, 100)))
    assert uncorrected_peak(100) == pytest.approx((1 - 0.9**101) / math.sqrt(1 - 0.999**101))


def test_lamb_trust_ratio_hand_computed() -> None:
    p = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||p|| = 5
    opt = Lamb([p], lr=0.1, weight_decay=0.0)
    p.grad = torch.tensor([1.0, 1.0])
    opt.step()
    u = torch.tensor([1.0, 1.0]) / (1.0 + 1e-6)  # bias-corrected first step: g / (|g| + eps)
    want = torch.tensor([3.0, 4.0]) - 0.1 * (5.0 / u.norm()) * u
    torch.testing.assert_close(p.detach(), want)


def test_param_groups_exclude_layernorm_and_bias() -> None:
    from bertkit.config import BertConfig
    from bertkit.models.bert import BertForPreTraining

    model = BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=100))
    decay, plain = param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(not names[id(p)].endswith("bias") and "norm" not in names[id(p)]
               for p in decay["params"])
    assert {names[id(p)] for p in plain["params"]} == {
        n for n, _ in model.named_parameters() if n.endswith("bias") or "norm" in n}
    assert plain["weight_decay"] == 0.0 and decay["weight_decay"] == 0.01


def test_schedule_values() -> None:
    f = WarmupDecay(10, 100)
    assert [f(s) for s in (0, 1, 9)] == [0.0, 0.1, 0.9]
    assert f(10) == pytest.approx(0.9) and f(50) == pytest.approx(0.5) and f(100) == 0.0
    assert f(150) == 0.0
    poly = WarmupDecay(0, 100, "polynomial", power=2.0)
    assert poly(50) == pytest.approx(0.25)
    assert WarmupDecay(5, 100, "constant")(60) == 1.0
    p = nn.Parameter(torch.zeros(1))
    opt = AdamW([p], lr=2.0)
    sched = build_scheduler(opt, 10, 100)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == [0.0, 0.2, 0.4] and lrs[11] == pytest.approx(2.0 * (1 - 11 / 100))


def test_decay_after_warmup_equals_transformers_linear_schedule() -> None:
    """``after_warmup=True`` is transformers' get_linear_schedule_with_warmup, step for step;
    Google's (the default) runs 10% lower right after a 10% warmup."""
    transformers = pytest.importorskip("transformers")
    ours_p, ref_p = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    ours_opt, ref_opt = AdamW([ours_p], lr=5e-5), torch.optim.AdamW([ref_p], lr=5e-5)
    ours = build_scheduler(ours_opt, 37, 370, after_warmup=True)
    ref = transformers.get_linear_schedule_with_warmup(ref_opt, 37, 370)
    for _ in range(380):
        assert ours.get_last_lr() == pytest.approx(ref.get_last_lr(), rel=1e-12, abs=1e-18)
        for o in (ours_opt, ref_opt):
            o.step()
        ours.step()
        ref.step()
    google = WarmupDecay(37, 370)
    assert google(37) == pytest.approx(0.9) and WarmupDecay(37, 370, after_warmup=True)(37) == 1.0


# ----------------------------------------------------------------------------- runs


_KILL_AFTER_SAVE = """
import os, signal, sys
from bertkit.train import checkpoint as C, pretrain as P
orig = C.save_checkpoint
def save_then_die(run, step, *a, **k):
    path = orig(run, step, *a, **k)
    if step == {step}:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
C.save_checkpoint = save_then_die
sys.exit(P.main(sys.argv[1:]))
"""


def test_exact_resume_after_sigkill(pretrain_args, pretrain_flags, tmp_path: Path) -> None:
    """2N steps straight == SIGKILL after the checkpoint at N, then resumed (dropout on).

    The killed run is started and restarted by the same ``--resume auto`` command, as
    ``torchrun --max-restarts`` or a job scheduler relaunches it.
    """
    n = 4
    straight = pretrain_args(tmp_path / "straight", max_steps=2 * n, save_every=n)
    assert P.run_pretrain(straight) == 0
    killed = replace(straight, out=str(tmp_path / "killed"), resume="auto")
    script = textwrap.dedent(_KILL_AFTER_SAVE.format(step=n))
    proc = subprocess.run([sys.executable, "-c", script, *pretrain_flags(killed)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [s for s, _ in C.list_checkpoints(killed.out)] == [n]
    assert P.run_pretrain(killed) == 0
    assert _losses(Path(killed.out)) == _losses(Path(straight.out))
    assert len(_losses(Path(straight.out))) == 2 * n
    a = C.load_checkpoint(C.checkpoint_dir(straight.out, 2 * n))
    b = C.load_checkpoint(C.checkpoint_dir(killed.out, 2 * n))
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])


def test_sigterm_checkpoints_and_exits(pretrain_args, tmp_path: Path, monkeypatch) -> None:
    calls = {"n": 0}
    orig = P.pretraining_loss

    def loss_then_term(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return orig(*a, **k)

    monkeypatch.setattr(P, "pretraining_loss", loss_then_term)
    args = pretrain_args(tmp_path / "run", max_steps=50, save_every=100)
    assert P.run_pretrain(args) == 128 + signal.SIGTERM
    assert [s for s, _ in C.list_checkpoints(args.out)] == [3]


def test_nan_loss_is_skipped_counted_then_stops(pretrain_args, tmp_path: Path,
                                                monkeypatch) -> None:
    calls = {"n": 0}
    orig = P.pretraining_loss

    def nan_on_second(model, batch, counts):
        calls["n"] += 1
        out = orig(model, batch, counts)
        if calls["n"] == 2:
            out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(P, "pretraining_loss", nan_on_second)
    args = pretrain_args(tmp_path / "run", max_steps=4)
    assert P.run_pretrain(args) == 0
    recs = [r for r in P.read_metrics(args.out) if r["split"] == "train"]
    assert [r["step"] for r in recs] == [1, 2, 3, 4] and recs[-1]["nonfinite_total"] == 1
    assert all(math.isfinite(r["loss"]) for r in recs)

    def always_nan(model, batch, counts):
        out = orig(model, batch, counts)
        out["loss"] = out["loss"] * float("nan")
        return out

    monkeypatch.setattr(P, "pretraining_loss", always_nan)
    bad = pretrain_args(tmp_path / "bad", max_steps=10, max_nonfinite=3)
    assert P.run_pretrain(bad) == 1
    assert C.list_checkpoints(bad.out) == []


def test_damaged_checkpoint_at_resume(pretrain_args, tmp_path: Path) -> None:
    args = pretrain_args(tmp_path / "run", max_steps=4, save_every=2)
    assert P.run_pretrain(args) == 0
    newest = C.checkpoint_dir(args.out, 4)
    data = (newest / "state.pt").read_bytes()
    (newest / "state.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(C.CheckpointError, match="truncated.*checkpoint-00000002"):
        P.run_pretrain(replace(args, resume=args.out, max_steps=6))
    (newest / "state.pt").write_bytes(data[:-8] + bytes(8))
    with pytest.raises(C.CheckpointError, match="damaged"):
        C.load_checkpoint(newest)
    # the previous good one still resumes
    assert P.run_pretrain(replace(args, resume=str(C.checkpoint_dir(args.out, 2)),
                                  max_steps=6)) == 0


def test_full_disk_keeps_previous_checkpoint(pretrain_args, tmp_path: Path, monkeypatch) -> None:
    args = pretrain_args(tmp_path / "run", max_steps=2, save_every=2)
    assert P.run_pretrain(args) == 0
    good = C.checkpoint_dir(args.out, 2)
    before = (good / "state.pt").read_bytes()

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(C.torch, "save", full)
    with pytest.raises(C.CheckpointError, match="No space left.*previous checkpoints"):
        P.run_pretrain(replace(args, resume=args.out, max_steps=4))
    monkeypatch.undo()
    assert (good / "state.pt").read_bytes() == before
    assert [s for s, _ in C.list_checkpoints(args.out)] == [2]
    assert not list(Path(args.out).glob(".checkpoint-*"))
    C.load_checkpoint(good)


def test_data_from_another_vocab_or_length_than_init(tiny_data, pretrain_args,
                                                     tmp_path: Path) -> None:
    from bertkit.config import BertConfig
    from bertkit.models.bert import BertForPreTraining

    init = tmp_path / "init"
    BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=600)).save_pretrained(init)
    (init / "vocab.txt").write_text(tiny_data["vocab"].read_text().replace("the", "teh"))
    with pytest.raises(ValueError, match="another vocabulary"):
        P.run_pretrain(pretrain_args(tmp_path / "a", config=None, init=str(init)))
    short = tmp_path / "short"
    BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=600,
                                              max_position_embeddings=16)).save_pretrained(short)
    with pytest.raises(ValueError, match="max_seq_length 32 .*max_position_embeddings 16"):
        P.run_pretrain(pretrain_args(tmp_path / "b", config=None, init=str(short)))
    big = tmp_path / "big"
    BertForPreTraining(BertConfig.from_preset("tiny", vocab_size=700)).save_pretrained(big)
    with pytest.raises(ValueError, match="vocabulary of 600 entries .*vocab_size 700"):
        P.run_pretrain(pretrain_args(tmp_path / "c", config=None, init=str(big)))


def test_eval_metrics_and_export_loads_in_transformers(tiny_data, pretrain_args,
                                                       tmp_path: Path) -> None:
    args = pretrain_args(tmp_path / "run", max_steps=3, eval_data=str(tiny_data["eval"]),
                 eval_every=2, eval_batches=4)
    assert P.run_pretrain(args) == 0
    evals = [r for r in P.read_metrics(args.out) if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [2, 3]
    assert set(evals[0]) >= {"masked_lm_accuracy", "masked_lm_loss", "next_sentence_accuracy",
                             "next_sentence_loss"}
    out = tmp_path / "export"
    assert P.run_export(P.ExportArgs(checkpoint=args.out, out=str(out))) == 0
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "vocab.txt",
                                                "tokenizer_config.json"}
    transformers = pytest.importorskip("transformers")
    hf, info = transformers.BertForPreTraining.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    from bertkit.models.bert import BertForPreTraining

    ours = BertForPreTraining.from_pretrained(out).eval()
    ids = torch.randint(5, 600, (2, 12))
    with torch.no_grad():
        want = hf.eval()(input_ids=ids).prediction_logits
        got = ours(ids).mlm_logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_learns_beyond_the_unigram_solution_on_real_text(tiny_data, pretrain_args,
                                                         tmp_path: Path, caplog) -> None:
    """BERT-Tiny with the default optimizer (Adam with bias correction), lr 2e-3 and a short
    warmup leaves the unigram solution on held-out SOTU text within 600 steps. The same run with
    Google's uncorrected Adam is warned about: its early steps reach 4.9x lr (it stays at the unigram
    accuracy, measured at 5.35% here; see benchmarks/learn_pretrain.py for BERT-Mini).

    600 steps, not 300: at 300 a run is still leaving the unigram solution (5.3% here), so seeds
    0-3 and 12345 ended at 5.2-8.0% and the CI machine's CPU got 7.29% where this one gets 7.99%.
    At 600 seeds 0, 1, 2 and 12345 ended at 8.7-9.6%."""
    import numpy as np

    from bertkit.data.shards import PretrainingDataset

    def masked_labels(d: Path) -> np.ndarray:
        ds = PretrainingDataset(d)
        f = ds.features(np.arange(ds.total_rows))
        return f["masked_lm_ids"][f["masked_lm_weights"] > 0]

    held = masked_labels(tiny_data["eval"])
    unigram = float((held == np.bincount(masked_labels(tiny_data["train"])).argmax()).mean())
    args = pretrain_args(tmp_path / "run", eval_data=str(tiny_data["eval"]), max_steps=600,
                         batch_size=32, lr=2e-3, warmup_steps=40, eval_every=0, eval_batches=0,
                         save_every=600, log_every=50, threads=2)
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        assert P.run_pretrain(args) == 0
    assert "bias-correction" not in caplog.text
    final = [r for r in P.read_metrics(args.out) if r["split"] == "eval"][-1]
    # 1,450 held-out predictions: one standard error is about 0.7 points
    assert final["masked_lm_accuracy"] > unigram + 0.02, (final, unigram)

    google = pretrain_args(tmp_path / "google", max_steps=1, warmup_steps=40, lr=2e-3,
                           bias_correction=False)
    with caplog.at_level(logging.WARNING, logger="bertkit"):
        assert P.run_pretrain(google) == 0
    assert "--no-bias-correction with 40 warmup steps: early updates reach 4.9x" in caplog.text


@pytest.mark.real
def test_continue_from_minilm_and_export(tiny_data, pretrain_args, minilm_dir: Path,
                                         tmp_path: Path) -> None:
    """Continued pre-training of the real all-MiniLM-L6-v2 (MLM/NSP heads fresh), then export."""
    from bertkit.data.pretraining import InstanceSettings, create_pretraining_data

    data = tmp_path / "data"
    create_pretraining_data([str(tiny_data["root"] / "eval.txt")], minilm_dir / "vocab.txt", data,
                            InstanceSettings(max_seq_length=32, max_predictions_per_seq=5,
                                             dupe_factor=1), workers=1, progress=False)
    args = pretrain_args(tmp_path / "run", data=str(data), config=None, init=str(minilm_dir),
                 max_steps=2, save_every=2)
    assert P.run_pretrain(args) == 0
    out = tmp_path / "export"
    assert P.run_export(P.ExportArgs(checkpoint=args.out, out=str(out))) == 0
    transformers = pytest.importorskip("transformers")
    _, info = transformers.BertForPreTraining.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert (out / "vocab.txt").read_bytes() == (minilm_dir / "vocab.txt").read_bytes()


def test_phase_two_continues_on_longer_sequences(tiny_data, pretrain_args, tmp_path: Path) -> None:
    """``--resume RUN --data DIR64``: weights, optimizer and schedule continue on new data."""
    from bertkit.data.pretraining import InstanceSettings, create_pretraining_data

    args = pretrain_args(tmp_path / "run", max_steps=2, save_every=2)
    assert P.run_pretrain(args) == 0
    long = tmp_path / "data64"
    create_pretraining_data([str(tiny_data["root"] / "eval.txt")], tiny_data["vocab"], long,
                            InstanceSettings(max_seq_length=64, max_predictions_per_seq=10,
                                             dupe_factor=1), workers=1, progress=False)
    assert P.run_pretrain(replace(args, data=str(long), resume=args.out, max_steps=4)) == 0
    recs = [r for r in P.read_metrics(args.out) if r["split"] == "train"]
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    ck = C.load_checkpoint(C.checkpoint_dir(args.out, 4))
    assert ck["cursor"]["batch"] == 2 and ck["scheduler"]["last_epoch"] == 4


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature (PNG spec 5.2)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR", "the first PNG chunk must be IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_of_a_real_run_writes_png(tiny_data, pretrain_args, tmp_path: Path, capsys) -> None:
    """``bertkit plot RUN`` on a real 4-step run with evaluations; a clear error without metrics."""
    from bertkit.cli import main as cli

    args = pretrain_args(tmp_path / "run", max_steps=4, save_every=4,
                         eval_data=str(tiny_data["eval"]), eval_every=2, eval_batches=2)
    assert P.run_pretrain(args) == 0
    if importlib.util.find_spec("matplotlib") is None:
        assert cli(["plot", args.out]) == 2
        return
    assert cli(["plot", args.out]) == 0
    png = (Path(args.out) / "curves.png").read_bytes()
    assert len(png) > 0 and _png_size(png) == (1100, 400)  # figsize (11, 4) at 100 dpi
    import matplotlib.image

    pixels = matplotlib.image.imread(Path(args.out) / "curves.png")  # decodes the whole image
    assert pixels.shape[:2] == (400, 1100) and pixels.std() > 0  # curves drawn, not blank
    empty = tmp_path / "empty-run"
    empty.mkdir()
    capsys.readouterr()
    assert cli(["plot", str(empty)]) == 2  # an error: one line, exit status 2
    err = capsys.readouterr().err
    assert f"{empty / 'metrics.jsonl'} not found: not a pretrain run directory" in err
    assert not (empty / "curves.png").exists()


def test_run_state_saves_and_loads_itself(tmp_path: Path) -> None:
    """A RunState written as a checkpoint and loaded into fresh parts continues exactly: same
    weights, Adam moments, schedule position and lr, counters, cursor and RNG stream; a cursor
    into other data is dropped."""
    from bertkit.config import AutoConfig
    from bertkit.models.auto import AutoModelForMaskedLM
    from bertkit.train.distributed import SINGLE
    from bertkit.train.loop import LoopState
    from bertkit.train.optim import build_optimizer, build_scheduler
    from bertkit.train.state import Cursor, RunState

    def fresh(seed: int) -> RunState:
        torch.manual_seed(seed)
        model = AutoModelForMaskedLM.from_config(AutoConfig.from_preset("tiny", vocab_size=99))
        opt = build_optimizer(model, "adamw", 1e-3, 0.01)
        return RunState(model, opt, build_scheduler(opt, 2, 10), data="abc")

    a = fresh(0)
    for _ in range(3):
        x = torch.randint(0, 99, (2, 7))
        a.model(input_ids=x).mlm_logits.float().logsumexp(-1).mean().backward()
        a.optimizer.step()
        a.scheduler.step()
        a.optimizer.zero_grad()
    a.loop, a.cursor = LoopState(step=3, batches=4, nonfinite_total=1), Cursor(1, 2)
    path = a.save(tmp_path, SINGLE, keep_last=2)
    assert path == C.checkpoint_dir(tmp_path, 3)
    ck = C.load_checkpoint(path)
    assert set(ck) == {"model", "optimizer", "scheduler", "scaler", "loop", "rng", "cursor"}
    want_draw = torch.rand(3)
    b = fresh(1)
    b.model.load_state_dict(ck["model"])
    b.load_state_dict(ck, SINGLE, lr=1e-3, seed=0)
    assert torch.equal(torch.rand(3), want_draw)  # the RNG continues where the save was
    assert b.loop == a.loop and b.cursor == a.cursor
    assert b.scheduler.last_epoch == 3
    assert b.optimizer.param_groups[0]["lr"] == pytest.approx(a.optimizer.param_groups[0]["lr"])
    for (k, p), q in zip(a.model.state_dict().items(), b.model.state_dict().values(),
                         strict=True):
        assert torch.equal(p, q), k
    sa, sb = a.optimizer.state_dict()["state"], b.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    other = fresh(2)
    other.data = "other data"
    other.load_state_dict(ck, SINGLE, lr=1e-3, seed=0)
    assert other.cursor == Cursor() and other.loop.step == 3
