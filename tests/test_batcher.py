"""The token-budget batcher and the feature runner, without any model."""

from __future__ import annotations

import random

import pytest
import torch

from bertkit.inference.batcher import (
    Encoded,
    NonFiniteOutputError,
    pad_batch,
    run_features,
    token_budget_batches,
)


def test_batches_cover_every_index_once_within_budget() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    for budget in (1, 64, 512, 4096):
        batches = token_budget_batches(lengths, budget)
        flat = sorted(i for b in batches for i in b)
        assert flat == list(range(len(lengths)))
        for b in batches:
            padded = len(b) * max(lengths[i] for i in b)
            assert padded <= budget or len(b) == 1  # only a lone over-long input passes it
            assert [lengths[i] for i in b] == sorted((lengths[i] for i in b), reverse=True)


def test_batches_are_length_sorted_and_greedy() -> None:
    assert token_budget_batches([3, 9, 1, 8, 2], 18) == [[1, 3], [0, 4, 2]]
    assert token_budget_batches([5, 5, 5], 100, max_batch_size=2) == [[0, 1], [2]]
    assert token_budget_batches([], 10) == []
    # multiple choice: an input of K rows costs K x T
    assert token_budget_batches([4, 4, 4], 32, rows=[4, 4, 4]) == [[0, 1], [2]]


@pytest.mark.parametrize("kw", [{"max_batch_tokens": 0}, {"max_batch_tokens": 8,
                                                          "max_batch_size": 0}])
def test_bad_limits_name_the_field(kw: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(k for k in kw if kw[k] == 0))):
        token_budget_batches([1, 2], **kw)


def test_pad_batch_pads_to_the_longest_and_masks() -> None:
    batch = pad_batch([Encoded([1, 2, 3], [0, 0, 1]), Encoded([4])], pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert all(t.dtype == torch.long for t in batch.values())
    choice = pad_batch([Encoded([[1, 2], [3]]), Encoded([[4], [5, 6, 7]])], 0, token_types=False)
    assert choice["input_ids"].shape == (2, 2, 3) and "token_type_ids" not in choice
    with pytest.raises(ValueError, match="mixes"):
        pad_batch([Encoded([1]), Encoded([[1]])], 0)


def test_run_features_returns_input_order_and_pads_per_batch() -> None:
    seen: list[tuple[int, int]] = []

    def backend(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = inputs["input_ids"]
        seen.append(tuple(ids.shape))
        return {"last_hidden_state": ids[..., None].float(),            # (B, T, 1)
                "pooler_output": inputs["attention_mask"].sum(1, keepdim=True).float()}

    rng = random.Random(1)
    items = [Encoded([rng.randint(1, 99) for _ in range(rng.randint(1, 40))]) for _ in range(60)]
    outs = run_features(backend, items, pad_id=0, max_batch_tokens=128)
    for it, out in zip(items, outs, strict=True):
        assert out["pooler_output"].item() == len(it)
        assert out["last_hidden_state"][:len(it), 0].tolist() == it.input_ids
    assert all(b * t <= 128 or b == 1 for b, t in seen)
    assert sum(b * t for b, t in seen) < 60 * 40  # far less than padding all to the longest


def test_run_features_names_the_nonfinite_inputs() -> None:
    def backend(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["input_ids"].float()
        return {"logits": torch.where(x == 7, torch.nan, x)}

    items = [Encoded([1, 2]), Encoded([7]), Encoded([3, 7, 1])]
    with pytest.raises(NonFiniteOutputError) as e:
        run_features(backend, items, pad_id=0)
    assert e.value.features == [1, 2]
