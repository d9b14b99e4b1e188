"""Unit tests of the pure masking functions (Google's create_masked_lm_predictions)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from bertkit.data import masking as M

CLS, SEP, MASK, V = 101, 102, 103, 30522


def test_doctests() -> None:
    assert doctest.testmod(M).failed == 0


def test_num_to_predict_rounds_half_to_even_like_python() -> None:
    lengths = np.arange(1, 400)
    want = [min(20, max(1, int(round(n * 0.15)))) for n in lengths]
    assert M.num_to_predict(lengths, 0.15, 20).tolist() == want
    assert M.num_to_predict(np.array([30, 10]), 0.15, 20).tolist() == [4, 2]  # 4.5 -> 4, 1.5 -> 2


def test_group_ids_whole_word_joins_across_sep_like_google() -> None:
    # [CLS] a ##b [SEP] ##c d [SEP]: Google appends ##c to the last group, which is "a ##b"
    ids = np.array([[CLS, 5, 6, SEP, 7, 8, SEP]])
    cont = np.array([[0, 0, 1, 0, 1, 0, 0]], dtype=bool)
    cands = M.candidate_mask(ids, np.array([7]), CLS, SEP)
    assert M.group_ids(cands, cont).tolist() == [[-1, 0, 0, -1, 0, 1, -1]]
    assert M.group_ids(cands, None).tolist() == [[-1, 0, 1, -1, 2, 3, -1]]
    # a continuation piece with no candidate before it starts its own group
    assert M.group_ids(np.array([[False, True, True]]),
                       np.array([[False, True, False]])).tolist() == [[-1, 0, 1]]


def test_choose_positions_skips_a_group_that_would_overshoot() -> None:
    # groups: {1,2,3} (size 3), {4}, {5}; shuffled order = group 0 first; k = 2
    gids = np.array([[-1, 0, 0, 0, 1, 2, -1]])
    keys = np.array([[0.9, 0.1, 0.8, 0.8, 0.5, 0.3, 0.9]])  # group key = key at its first piece
    chosen = M.choose_positions(gids, np.array([2]), keys)
    assert np.flatnonzero(chosen[0]).tolist() == [4, 5]
    # k = 4: group 0 (3 pieces) fits first, then group 2 (key .3) fits, group 1 would overshoot
    chosen = M.choose_positions(gids, np.array([4]), keys)
    assert np.flatnonzero(chosen[0]).tolist() == [1, 2, 3, 5]


def test_replace_80_10_10_and_sorted_predictions() -> None:
    ids = np.array([[CLS, 10, 11, 12, 13, SEP]])
    chosen = np.array([[0, 1, 1, 1, 0, 0]], dtype=bool)
    noise = M.MaskNoise(np.zeros((1, 6)), np.array([[0, 0.1, 0.85, 0.95, 0, 0]]),
                        np.array([[0, 0, 0.2, 0.7, 0, 0]]), np.full((1, 6), 777))
    out = M.replace_80_10_10(ids, chosen, noise, MASK)
    assert out.tolist() == [[CLS, MASK, 11, 777, 13, SEP]]
    pos, labels, weights, counts = M.gather_predictions(ids, chosen, 4)
    assert pos.tolist() == [[1, 2, 3, 0]] and labels.tolist() == [[10, 11, 12, 0]]
    assert weights.tolist() == [[1, 1, 1, 0]] and counts.tolist() == [3]


def _random_batch(n: int, L: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    lengths = rng.integers(5, L + 1, size=n)
    ids = rng.integers(1000, 2000, size=(n, L))
    ids[np.arange(L)[None, :] >= lengths[:, None]] = 0
    ids[:, 0] = CLS
    ids[np.arange(n), lengths - 1] = SEP
    mid = rng.integers(2, lengths - 1)
    ids[np.arange(n), mid] = SEP
    return ids, lengths


@pytest.mark.parametrize("whole_word", [False, True])
def test_mask_batch_rule_and_specials(whole_word: bool) -> None:
    rng = np.random.default_rng(0)
    ids, lengths = _random_batch(4000, 64, rng)
    cont = rng.random(ids.shape) < 0.3 if whole_word else None
    out = M.mask_batch(ids, lengths, M.generator_noise(rng, ids.shape, V), cls_id=CLS,
                       sep_id=SEP, mask_id=MASK, masked_lm_prob=0.15,
                       max_predictions_per_seq=8, continuation=cont)
    k = M.num_to_predict(lengths, 0.15, 8)
    if whole_word:
        assert (out.counts <= k).all()  # a word that does not fit is skipped: may be fewer
    else:
        assert (out.counts == k).all()
    rows = np.arange(len(ids))[:, None]
    real = out.weights > 0
    assert (np.diff(out.positions, axis=1) > 0)[real[:, 1:]].all()  # strictly sorted
    orig = ids[rows, out.positions]
    assert ((orig != CLS) & (orig != SEP))[real].all()  # never a special
    assert (out.positions < lengths[:, None])[real].all()  # never padding
    assert (out.labels == orig)[real].all()
    changed = out.input_ids != ids
    assert not (changed & ~np.isin(np.arange(64)[None, :], out.positions)).any()


def test_counter_noise_depends_on_row_not_batch() -> None:
    rows = np.array([5, 17, 900])
    a = M.counter_noise(42, rows, 16, V)
    b = M.counter_noise(42, rows[[2, 0]], 16, V)
    assert np.array_equal(a.group_keys[[2, 0]], b.group_keys)
    assert np.array_equal(a.random_ids[[2, 0]], b.random_ids)
    c = M.counter_noise(43, rows, 16, V)
    assert not np.array_equal(a.u_mask, c.u_mask)
    big = M.counter_noise(7, np.arange(2000), 128, V)
    assert abs(big.u_mask.mean() - 0.5) < 0.005 and big.random_ids.max() < V


def test_80_10_10_proportions_on_many_positions() -> None:
    rng = np.random.default_rng(1)
    ids, lengths = _random_batch(20000, 32, rng)
    out = M.mask_batch(ids, lengths, M.counter_noise(3, np.arange(len(ids)), 32, V),
                       cls_id=CLS, sep_id=SEP, mask_id=MASK, masked_lm_prob=0.15,
                       max_predictions_per_seq=5)
    real = out.weights > 0
    shown = out.input_ids[np.arange(len(ids))[:, None], out.positions][real]
    labels = out.labels[real]
    assert abs((shown == MASK).mean() - 0.8) < 0.01
    assert abs((shown == labels).mean() - 0.1) < 0.01
