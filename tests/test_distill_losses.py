"""Distillation losses against the formulas written out plainly, and students built from a tiny
teacher against the teacher's own modules run by hand."""

from __future__ import annotations

import pytest
import torch

from bertkit.config import BertConfig
from bertkit.distill.losses import (
    IGNORE_INDEX,
    HiddenProjection,
    LossWeights,
    attention_kl_loss,
    cosine_hidden_loss,
    distilbert_loss,
    hidden_mse_loss,
    masked_rows,
    mlm_cross_entropy,
    soft_target_kl,
    task_distill_loss,
)
from bertkit.distill.student import (
    DistillError,
    build_student,
    check_vocabularies,
    parse_student_layers,
)
from bertkit.errors import BertkitError
from bertkit.models.bert import BertForPreTraining, BertModel, padding_mask
from bertkit.models.distilbert import DistilBertForMaskedLM

ATOL = 1e-6


def tiny_config(**overrides: object) -> BertConfig:
    fields = dict(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=32)
    fields.update(overrides)
    return BertConfig(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def teacher() -> BertForPreTraining:
    torch.manual_seed(0)
    return BertForPreTraining(tiny_config()).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask (row 1 padded), masked (B, T) bool."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (2, 12), generator=g)
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    ids[1, 8:] = 0
    masked = torch.zeros(2, 12, dtype=torch.bool)
    masked[0, [1, 4, 9]] = True
    masked[1, [2, 6]] = True
    return ids, mask, masked


def plain_softmax(x: torch.Tensor) -> torch.Tensor:
    e = torch.exp(x - x.max(-1, keepdim=True).values)
    return e / e.sum(-1, keepdim=True)


def plain_kl(s: torch.Tensor, t: torch.Tensor, T: float) -> torch.Tensor:
    """T^2 * mean over rows of sum_v p_t (log p_t - log p_s)."""
    ps, pt = plain_softmax(s / T), plain_softmax(t / T)
    return T * T * (pt * (torch.log(pt) - torch.log(ps))).sum(-1).mean()


def seeded(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
                       ).float()


# ------------------------------------------------------------------ DistilBERT's terms

def test_soft_target_kl_is_the_formula() -> None:
    s, t = seeded(7, 100, seed=1), seeded(7, 100, seed=2)
    for T in (1.0, 2.0, 4.0):
        assert torch.allclose(soft_target_kl(s, t, T), plain_kl(s, t, T), atol=ATOL)
    assert float(soft_target_kl(s, s)) == pytest.approx(0.0, abs=ATOL)


def test_mlm_cross_entropy_is_the_formula() -> None:
    logits, labels = seeded(6, 100, seed=3), torch.tensor([0, 5, 99, 42, 7, 7])
    plain = -torch.log(plain_softmax(logits)[torch.arange(6), labels]).mean()
    assert torch.allclose(mlm_cross_entropy(logits, labels), plain, atol=ATOL)


def test_cosine_loss_is_the_formula_on_tokens_only() -> None:
    s, t = seeded(2, 5, 8, seed=4), seeded(2, 5, 8, seed=5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    terms = []
    for b in range(2):
        for i in range(5):
            if mask[b, i]:
                u, v = s[b, i] / s[b, i].norm(), t[b, i] / t[b, i].norm()
                terms.append(1 - (u * v).sum())
    assert torch.allclose(cosine_hidden_loss(s, t, mask), torch.stack(terms).mean(), atol=ATOL)


def test_distilbert_loss_is_the_weighted_sum() -> None:
    s, t = seeded(5, 100, seed=6), seeded(5, 100, seed=7)
    labels = torch.tensor([1, 2, 3, 4, 5])
    hs, ht, mask = seeded(2, 4, 8, seed=8), seeded(2, 4, 8, seed=9), torch.ones(2, 4)
    out = distilbert_loss(s, t, labels, hs, ht, mask)
    assert out.ce is not None and out.mlm is not None and out.cos is not None
    assert torch.allclose(out.ce, plain_kl(s, t, 2.0), atol=ATOL)
    assert torch.allclose(out.total, 5 * out.ce + 2 * out.mlm + 1 * out.cos, atol=ATOL)
    only = distilbert_loss(s, t, labels, hs, ht, mask, LossWeights(alpha_mlm=0, alpha_cos=0))
    assert only.mlm is None and only.cos is None
    assert torch.allclose(only.total, 5 * out.ce, atol=ATOL)


def test_a_batch_without_masked_positions_gives_zero_not_nan() -> None:
    s, t = seeded(0, 100).requires_grad_(), seeded(0, 100)
    loss = soft_target_kl(s, t)
    loss.backward()  # still in the graph
    assert float(loss.detach()) == 0.0
    assert float(mlm_cross_entropy(s.detach(), torch.zeros(0, dtype=torch.long))) == 0.0
    assert float(cosine_hidden_loss(seeded(1, 3, 8), seeded(1, 3, 8), torch.zeros(1, 3))) == 0.0


def test_masked_kl_equals_the_full_vocabulary_reference(teacher, batch) -> None:
    """Logits only at the masked positions give the reference distiller's loss, which computes
    (B, T, V) logits at every position and keeps the masked rows."""
    ids, mask, masked = batch
    student = build_student(teacher, (0, 2))
    positions = torch.tensor([[1, 4, 9], [2, 6, 0]])
    weights = torch.tensor([[1, 1, 1], [1, 1, 0]])
    with torch.no_grad():
        s_pos = student(ids, mask, masked_lm_positions=positions).mlm_logits  # (B, P, V)
        t_pos = teacher(ids, mask, masked_lm_positions=positions).mlm_logits
        s_full = student(ids, mask).mlm_logits                                 # (B, T, V)
        t_full = teacher(ids, mask).mlm_logits
    ours = soft_target_kl(masked_rows(s_pos, weights), masked_rows(t_pos, weights))
    select = masked[..., None].expand_as(s_full)                               # (B, T, V)
    reference = plain_kl(s_full[select].view(-1, 100), t_full[select].view(-1, 100), 2.0)
    assert torch.allclose(ours, reference, atol=ATOL)


# ------------------------------------------------------------------ TinyBERT / MiniLM

def test_hidden_mse_with_projection_is_the_formula() -> None:
    torch.manual_seed(0)
    s = [seeded(2, 4, 16, seed=i) for i in range(3)]
    t = [seeded(2, 4, 32, seed=10 + i) for i in range(5)]
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    proj = HiddenProjection(16, 32)
    pairs = [(0, 0), (2, 4)]
    plain = torch.zeros(())
    for i, j in pairs:
        d = (s[i] @ proj.proj.weight.T + proj.proj.bias - t[j]) ** 2      # (B, T, Ht)
        plain = plain + (d * mask[..., None]).sum() / (mask.sum() * 32)
    assert torch.allclose(hidden_mse_loss(s, t, pairs, proj, mask), plain, atol=ATOL)
    assert isinstance(HiddenProjection(32, 32).proj, torch.nn.Identity)


def test_attention_kl_is_the_formula_with_padding(teacher, batch) -> None:
    ids, mask, _ = batch
    student = build_student(teacher, (0, 2))
    with torch.no_grad():
        ta = teacher(ids, mask, output_attentions=True).attentions
        sa = student(ids, mask, output_attentions=True).attentions
    pairs = [(0, 1), (1, 3)]
    plain = torch.zeros(())
    for i, j in pairs:
        rows = []
        for b in range(2):
            n = int(mask[b].sum())
            for h in range(4):
                for q in range(n):
                    p, r = ta[j][b, h, q, :n], sa[i][b, h, q, :n]
                    rows.append((p * (torch.log(p) - torch.log(r))).sum())
        plain = plain + torch.stack(rows).mean()
    ours = attention_kl_loss(sa, ta, pairs, mask)
    assert torch.allclose(ours, plain, atol=ATOL)
    assert float(attention_kl_loss(ta, ta, [(2, 2)], mask)) == pytest.approx(0.0, abs=ATOL)
    with pytest.raises(DistillError, match=r"attention layer pair \(2, 3\) out of range"):
        attention_kl_loss(sa, ta, [(2, 3)], mask)
    with pytest.raises(DistillError, match="no layer pairs"):
        hidden_mse_loss(sa, ta, [])


# ------------------------------------------------------------------ task distillation

def test_task_classification_mixes_hard_labels_where_they_exist() -> None:
    s, t = seeded(4, 3, seed=20), seeded(4, 3, seed=21)
    labels = torch.tensor([2, IGNORE_INDEX, 0, IGNORE_INDEX])
    out = task_distill_loss("classification", s, t, labels, temperature=3.0, alpha_hard=0.25)
    ps, pt = plain_softmax(s / 3), plain_softmax(t / 3)
    soft = 9 * (pt * (torch.log(pt) - torch.log(ps))).sum(-1)                # (B,)
    hard = -torch.log(plain_softmax(s)[torch.arange(4), labels.clamp_min(0)])
    w = torch.tensor([0.25, 0.0, 0.25, 0.0])
    assert torch.allclose(out.total, ((1 - w) * soft + w * hard).mean(), atol=ATOL)
    assert out.hard is not None and torch.allclose(out.hard, hard[[0, 2]].mean(), atol=ATOL)
    unlabelled = task_distill_loss("classification", s, t, None, temperature=3.0)
    assert unlabelled.hard is None and torch.allclose(unlabelled.total, soft.mean(), atol=ATOL)


def test_task_ner_counts_masked_tokens_only() -> None:
    s, t = seeded(2, 5, 4, seed=22), seeded(2, 5, 4, seed=23)
    label_mask = torch.tensor([[0, 1, 1, 0, 1], [0, 1, 0, 0, 0]])
    labels = torch.tensor([[0, 3, 1, 0, 2], [0, 1, 0, 0, 0]])
    out = task_distill_loss("ner", s, t, labels, label_mask, temperature=2.0, alpha_hard=0.5)
    sel = label_mask.bool()
    soft = plain_kl(s[sel], t[sel], 2.0)
    hard = -torch.log(plain_softmax(s[sel])[torch.arange(4), labels[sel]]).mean()
    assert torch.allclose(out.total, 0.5 * soft + 0.5 * hard, atol=ATOL)
    with pytest.raises(ValueError, match="label_mask"):
        task_distill_loss("ner", s, t, labels)


def test_task_qa_averages_start_and_end() -> None:
    ss, se, ts, te = (seeded(3, 9, seed=30 + i) for i in range(4))
    starts, ends = torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6])
    out = task_distill_loss("qa", (ss, se), (ts, te), (starts, ends), alpha_hard=0.0)
    assert torch.allclose(out.total, (plain_kl(ss, ts, 2.0) + plain_kl(se, te, 2.0)) / 2,
                          atol=ATOL)
    hard_only = task_distill_loss("qa", (ss, se), (ts, te), (starts, ends), alpha_hard=1.0)
    ce = [-torch.log(plain_softmax(x)[torch.arange(3), y]).mean()
          for x, y in ((ss, starts), (se, ends))]
    assert torch.allclose(hard_only.total, (ce[0] + ce[1]) / 2, atol=ATOL)


def test_task_regression_is_mse() -> None:
    s, t = seeded(4, 1, seed=40), seeded(4, 1, seed=41)
    labels = torch.tensor([0.5, float("nan"), -1.0, 2.0])
    out = task_distill_loss("regression", s, t, labels, alpha_hard=0.5)
    soft = (s[:, 0] - t[:, 0]) ** 2
    hard = (s[:, 0] - labels.nan_to_num()) ** 2
    w = torch.tensor([0.5, 0.0, 0.5, 0.5])
    assert torch.allclose(out.total, ((1 - w) * soft + w * hard).mean(), atol=ATOL)


def test_gradients_reach_the_student_only() -> None:
    s = seeded(2, 3, 10, seed=50).requires_grad_()
    t = seeded(2, 3, 10, seed=51).requires_grad_()
    mask = torch.ones(2, 3)
    losses = [
        soft_target_kl(s.flatten(0, 1), t.flatten(0, 1)),
        cosine_hidden_loss(s, t, mask),
        distilbert_loss(s.flatten(0, 1), t.flatten(0, 1), torch.zeros(6, dtype=torch.long),
                        s, t, mask).total,
        hidden_mse_loss([s], [t], [(0, 0)], None, mask),
        attention_kl_loss([s.softmax(-1)[:, None]], [t.softmax(-1)[:, None]], [(0, 0)]),
        task_distill_loss("classification", s[:, 0], t[:, 0], torch.tensor([1, 2])).total,
        task_distill_loss("ner", s, t, None, mask).total,
        task_distill_loss("regression", s[:, 0, 0], t[:, 0, 0]).total,
    ]
    for loss in losses:
        s.grad = None
        loss.backward()
        assert s.grad is not None and bool(s.grad.abs().sum() > 0)
        assert t.grad is None


# ------------------------------------------------------------------ students

def test_student_is_the_teachers_layers_run_by_hand(teacher, batch) -> None:
    ids, mask, _ = batch
    types = torch.zeros_like(ids)
    types[0, 6:] = 1
    student = build_student(teacher)  # every other layer of 4: (0, 2)
    assert type(student) is BertForPreTraining and student.config.num_hidden_layers == 2
    with torch.no_grad():
        out = student(ids, mask, types)
        x = teacher.bert.embeddings(ids, types, None)
        for i in (0, 2):
            x, _ = teacher.bert.layers[i](x, padding_mask(mask))
        logits = teacher.mlm(x, teacher.bert.embeddings.word.weight)
        nsp = teacher.nsp(teacher.bert.pooler(x))
    assert torch.allclose(out.mlm_logits, logits, atol=ATOL)
    assert torch.allclose(out.nsp_logits, nsp, atol=ATOL)
    student.bert.layers[0].ffn.fc1.weight.data.zero_()  # a copy: the teacher is untouched
    assert teacher.bert.layers[0].ffn.fc1.weight.abs().sum() > 0


def test_student_of_a_base_model_keeps_its_pooler_choice(batch) -> None:
    ids, mask, _ = batch
    torch.manual_seed(2)
    base = BertModel(tiny_config(), add_pooler=False).eval()
    student = build_student(base, (1, 3))
    assert student.pooler is None and len(student.layers) == 2
    with torch.no_grad():
        x = base.embeddings(ids, None, None)
        for i in (1, 3):
            x, _ = base.layers[i](x, padding_mask(mask))
        assert torch.allclose(student(ids, mask).last_hidden_state, x, atol=ATOL)


def test_distilbert_student_equals_the_bert_student_on_single_texts(teacher, batch) -> None:
    ids, mask, _ = batch
    bert = build_student(teacher, (1, 2, 3))
    distil = build_student(teacher, (1, 2, 3), family="distilbert")
    assert isinstance(distil, DistilBertForMaskedLM)
    assert not any("token_type" in k or "pooler" in k for k in distil.state_dict())
    with torch.no_grad():
        a, b = bert(ids, mask), distil(ids, mask)
    assert torch.allclose(a.mlm_logits, b.mlm_logits, atol=1e-5)
    hidden_a = bert.bert(ids, mask).last_hidden_state
    assert torch.allclose(hidden_a, b.last_hidden_state, atol=1e-5)


@pytest.mark.parametrize(("layers", "message"), [
    ((0, 4), "--student-layers 0,4: layer 4 is out of range; the teacher has layers 0..3"),
    ((-1, 2), "layer -1 is out of range"),
    ((2, 1), "--student-layers 2,1: not strictly increasing"),
    ((1, 1), "not strictly increasing"),
    ((), "--student-layers is empty"),
])
def test_bad_student_layers(teacher, layers, message, monkeypatch) -> None:
    def built(*args: object, **kwargs: object) -> None:
        raise AssertionError("a student was built before the layers were checked")

    monkeypatch.setattr(BertForPreTraining, "__init__", built)
    with pytest.raises(DistillError, match=message) as caught:
        build_student(teacher, layers)
    assert isinstance(caught.value, BertkitError) and isinstance(caught.value, ValueError)


def test_bad_layer_text_and_family(teacher) -> None:
    assert parse_student_layers("0, 2,4") == (0, 2, 4)
    with pytest.raises(DistillError, match="--student-layers '0,x'"):
        parse_student_layers("0,x")
    with pytest.raises(DistillError, match="no layer given"):
        parse_student_layers(" , ")
    with pytest.raises(DistillError, match="--student-family 'roberta'"):
        build_student(teacher, (0,), family="roberta")


def test_different_vocabularies_are_refused() -> None:
    with pytest.raises(DistillError, match="teacher vocab_size 100, student vocab_size 120"):
        check_vocabularies(tiny_config(), tiny_config(vocab_size=120))
    with pytest.raises(DistillError, match="pad_token_id"):
        check_vocabularies(tiny_config(), tiny_config(pad_token_id=1))
    with pytest.raises(DistillError, match="token 1: teacher 'a', student 'b'"):
        check_vocabularies(tiny_config(), tiny_config(), ["[PAD]", "a"], ["[PAD]", "b"])
    check_vocabularies(tiny_config(), tiny_config(), ["[PAD]", "a"], ["[PAD]", "a"])


def test_student_of_a_distilbert_teacher(batch) -> None:
    from bertkit.config import DistilBertConfig

    ids, mask, _ = batch
    torch.manual_seed(3)
    fields = tiny_config().to_dict()
    cfg = DistilBertConfig(**{k: fields[k] for k in ("vocab_size", "hidden_size",
                                                      "num_hidden_layers", "num_attention_heads",
                                                      "intermediate_size",
                                                      "max_position_embeddings")})
    teacher = DistilBertForMaskedLM(cfg).eval()
    student = build_student(teacher, (1, 3), family="distilbert")
    assert type(student) is DistilBertForMaskedLM
    with torch.no_grad():
        x = teacher.distilbert.embeddings(ids, None, None)
        for i in (1, 3):
            x, _ = teacher.distilbert.layers[i](x, padding_mask(mask))
        logits = teacher.mlm(x, teacher.distilbert.embeddings.word.weight)
        assert torch.allclose(student(ids, mask).mlm_logits, logits, atol=ATOL)
