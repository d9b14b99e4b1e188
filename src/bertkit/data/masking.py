"""Masked-LM masking as pure, vectorised functions: Google's ``create_masked_lm_predictions``.

Notation: N sequences (rows), L = max_seq_length, P = max_predictions_per_seq, V = vocab size.
A batch is a padded id matrix ``input_ids`` [N, L] plus ``lengths`` [N] (tokens incl. specials).

Google's rule, per sequence (``create_pretraining_data.py``):

1. Candidates are all positions except the start token and the separators (and, here, padding).
2. With whole-word masking a piece that continues a word (one the tokenizer's ``is_word_start``
   rejects, or a supplied word boundary) joins the group of the candidate before it; otherwise
   each candidate is its own group. Google's quirk is kept: a continuation piece right after a
   separator joins the last group before it.
3. ``num_to_predict = min(P, max(1, round(len(tokens) * masked_lm_prob)))``, len counting specials,
   ``round`` being Python's (half to even).
4. Groups are shuffled and taken in that order, skipping a group that would overshoot the number.
5. Each chosen position: 80% the mask token, 10% unchanged, 10% a uniformly random vocabulary id.
6. Positions are sorted; labels are the original ids.

N-gram masking (ALBERT, ``ngram=3``): instead of single groups, spans of n consecutive groups
(words with whole-word masking, else pieces), n drawn with p(n) proportional to 1/n (6/11, 3/11,
2/11 for n <= 3); see :func:`choose_ngram_positions`.

The randomness comes in as a :class:`MaskNoise` (four [N, L] arrays, five with n-grams) so the same code serves the
static masking of instance creation (noise from a seeded ``numpy`` generator) and the dynamic
masking of the loader (noise from a counter-based hash of ``(seed, epoch, row)``, so a row's mask
does not depend on which batch or worker fetched it).

Worked example (no whole-word masking, 1 of the 3 words masked; start token 101, separator 102,
mask token 103, as in BERT's vocabulary)::

    >>> import numpy as np
    >>> ids = np.array([[101, 7, 8, 9, 102, 0]])
    >>> noise = MaskNoise(group_keys=np.array([[.9, .5, .1, .7, .9, .9]]),
    ...                   u_mask=np.zeros((1, 6)), u_keep=np.zeros((1, 6)),
    ...                   random_ids=np.zeros((1, 6), dtype=np.int64))
    >>> out = mask_batch(ids, np.array([5]), noise, cls_id=101, sep_id=102, mask_id=103,
    ...                  masked_lm_prob=0.15, max_predictions_per_seq=2)
    >>> out.input_ids.tolist(), out.positions.tolist(), out.labels.tolist(), out.counts.tolist()
    ([[101, 7, 103, 9, 102, 0]], [[2, 0]], [[8, 0]], [1])

Here ``round(5 * 0.15) = 1``; the group keys of candidates 1, 2, 3 are .5, .1, .7, so position 2
(lowest key) comes first in the shuffled order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MaskNoise",
    "MaskedBatch",
    "candidate_mask",
    "choose_ngram_positions",
    "choose_positions",
    "continuation_table",
    "counter_noise",
    "gather_predictions",
    "generator_noise",
    "group_ids",
    "mask_batch",
    "ngram_probs",
    "num_to_predict",
    "replace_80_10_10",
]

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class MaskNoise:
    """Uniform noise for one batch; every array is [N, L].

    group_keys: float64 in [0, 1) (53 random bits, so ties never occur): the shuffle of groups is the order of their keys (a group's key is
        the key at its first position). u_mask < 0.8 -> the mask token; else u_keep < 0.5 -> unchanged;
        else ``random_ids`` (int in [0, V)). u_ngram: float in [0, 1), the span length drawn for
        a span starting at that position (n-gram masking only; None otherwise).
    """

    group_keys: np.ndarray
    u_mask: np.ndarray
    u_keep: np.ndarray
    random_ids: np.ndarray
    u_ngram: np.ndarray | None = None


@dataclass(frozen=True)
class MaskedBatch:
    """Result of :func:`mask_batch`.

    input_ids [N, L] with the replacements; positions [N, P] (sorted, 0-padded); labels [N, P]
    (original ids, 0-padded); weights [N, P] float32 (1.0 real, 0.0 padding); counts [N];
    span_counts [N, max_n] (n-gram masking only: spans of n groups taken per row).
    """

    input_ids: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    counts: np.ndarray
    span_counts: np.ndarray | None = None


def continuation_table(vocab_tokens: list[str], is_word_start: Callable[[str], bool]
                       ) -> np.ndarray:
    """bool [V]: True for the pieces that continue a word (``not is_word_start(token)``).

    >>> continuation_table(["<s>", "Ġun", "aff", "able", "Ġ#"],
    ...                    lambda t: t.startswith("Ġ") or t == "<s>").tolist()
    [False, False, True, True, False]
    """
    return np.fromiter((not is_word_start(t) for t in vocab_tokens), dtype=bool,
                       count=len(vocab_tokens))


def num_to_predict(lengths: np.ndarray, masked_lm_prob: float,
                   max_predictions_per_seq: int) -> np.ndarray:
    """int64 [N]: ``min(P, max(1, round(length * masked_lm_prob)))`` with round-half-to-even.

    >>> num_to_predict(np.array([3, 30, 50, 128]), 0.15, 20).tolist()
    [1, 4, 8, 19]
    """
    k = np.rint(np.asarray(lengths, dtype=np.float64) * masked_lm_prob).astype(np.int64)
    return np.minimum(max_predictions_per_seq, np.maximum(1, k))


def candidate_mask(input_ids: np.ndarray, lengths: np.ndarray, cls_id: int,
                   sep_id: int) -> np.ndarray:
    """bool [N, L]: positions that may be masked (inside the length, not ``cls_id``/``sep_id``)."""
    L = input_ids.shape[1]
    inside = np.arange(L)[None, :] < np.asarray(lengths)[:, None]
    return inside & (input_ids != cls_id) & (input_ids != sep_id)


def group_ids(candidates: np.ndarray, continuation: np.ndarray | None) -> np.ndarray:
    """int64 [N, L]: the masking group of each candidate (0, 1, ... per row), -1 elsewhere.

    ``continuation`` (bool [N, L], or None for no whole-word masking) marks pieces that continue the
    previous word. A continuation piece joins the last candidate group before it, even across a
    separator (Google's behaviour); one with no candidate before it starts a group.

    >>> c = np.array([[False, True, True, True, False, True]])
    >>> group_ids(c, np.array([[0, 0, 1, 0, 0, 1]], dtype=bool)).tolist()
    [[-1, 0, 0, 1, -1, 1]]
    """
    starts = candidates.copy()
    if continuation is not None:
        seen_before = (np.cumsum(candidates, axis=1) - candidates) > 0
        starts &= ~(continuation & seen_before)
    gid = np.cumsum(starts, axis=1) - 1
    return np.where(candidates, gid, -1)


def choose_positions(gids: np.ndarray, k: np.ndarray, group_keys: np.ndarray) -> np.ndarray:
    """bool [N, L]: positions chosen for prediction.

    Groups are visited in increasing order of their key (a uniform shuffle) and taken greedily,
    skipping any group that would make the count exceed ``k`` [N] (Google's loop). Without whole-word
    groups every group has size 1 and this is "the k candidates with the smallest keys".
    """
    N, L = gids.shape
    rows = np.arange(N)[:, None]
    valid = gids >= 0
    flat = np.where(valid, gids, L)  # L = a dummy group collecting non-candidates
    sizes = np.bincount((rows * (L + 1) + flat).ravel(), minlength=N * (L + 1))
    sizes = sizes.reshape(N, L + 1)[:, :L]
    # the key of a group is the key at its first position
    prev_max = np.maximum.accumulate(gids, axis=1)
    prev_max = np.concatenate([np.full((N, 1), -1), prev_max[:, :-1]], axis=1)
    first = valid & (gids > prev_max)
    gk_full = np.full((N, L + 1), np.inf)
    gk_full[rows, np.where(first, gids, L)] = np.where(first, group_keys, np.inf)
    gkeys = gk_full[:, :L]
    k = np.asarray(k, dtype=np.int64)
    if (sizes <= 1).all():  # no multi-piece group: take the k groups with the smallest keys
        kth = np.sort(gkeys, axis=1)[np.arange(N), np.clip(k, 1, L) - 1][:, None]
        return (gk_full[rows, flat] <= kth) & valid
    order = np.argsort(gkeys, axis=1, kind="stable")  # [N, L] group ids in shuffled order
    ordered_sizes = np.take_along_axis(sizes, order, axis=1)
    take_ordered = np.zeros((N, L), dtype=bool)
    count = np.zeros(N, dtype=np.int64)
    max_groups = int((sizes > 0).sum(axis=1).max(initial=0))
    for r in range(max_groups):
        s = ordered_sizes[:, r]
        take = (s > 0) & (count + s <= k)
        take_ordered[:, r] = take
        count += np.where(take, s, 0)
    taken_group = np.zeros((N, L + 1), dtype=bool)
    taken_group[rows, order] = take_ordered
    return taken_group[rows, flat] & valid


def ngram_probs(max_n: int) -> np.ndarray:
    """float64 [max_n]: p(n) proportional to 1/n, n = 1..max_n.

    >>> (ngram_probs(3) * 11).round(6).tolist()
    [6.0, 3.0, 2.0]
    """
    inv = 1.0 / np.arange(1, max_n + 1)
    return inv / inv.sum()


@functools.lru_cache(maxsize=512)
def _ngram_draw_cdf(budget: int, max_n: int) -> np.ndarray:
    """float64 [max_n]: the CDF to draw span lengths from so that the spans taken under a budget
    of ``budget`` pieces come out at p(n) proportional to 1/n (see :func:`choose_ngram_positions`).

    Spans are taken until the budget is met and the last one is cut to fit, which by itself
    shifts the shares toward short spans (to about 57/27/16% at 19 predictions). The expected
    span counts under that rule are computed exactly (spans of one piece each, drawn
    independently) and the draw is re-weighted until they match the target.
    """
    m = max(1, min(max_n, budget))
    target = ngram_probs(max_n)[:m] / ngram_probs(max_n)[:m].sum()
    q = target.copy()
    for _ in range(200):
        reach = np.zeros(budget + 1)
        reach[0] = 1.0
        taken = np.zeros(m)
        for used in range(budget):
            for n in range(1, m + 1):
                w = reach[used] * q[n - 1]
                cut = min(n, budget - used)
                taken[cut - 1] += w
                reach[used + cut] += w
        share = taken / taken.sum()
        if np.abs(share - target).max() < 1e-6:
            break
        q = q * target / np.maximum(share, 1e-12)
        q /= q.sum()
    out = np.ones(max_n)
    out[:m] = np.cumsum(q)
    out[m - 1:] = 1.0
    return out


def choose_ngram_positions(gids: np.ndarray, k: np.ndarray, group_keys: np.ndarray,
                           u_ngram: np.ndarray, max_n: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """N-gram masking: bool [N, L] chosen positions and int64 [N, max_n] span counts.

    Per row, the groups are cut from left to right into spans of 1..``max_n`` groups (the length
    of the span starting at group g is drawn with ``u_ngram`` at g's first position), so spans
    never overlap. Spans are visited in increasing order of their key (``group_keys`` at their
    first position) and taken until ``k`` [N] pieces are chosen; a span that would overshoot is
    cut to the groups that fit, and skipped when none does (Google's rule for a long word).
    ALBERT draws n with p(n) proportional to 1/n and cuts the last span the same way, which leaves
    too many short spans; here the draw is re-weighted for the row's budget
    (:func:`_ngram_draw_cdf`) so that the spans taken come out at 1/n (6/11, 3/11, 2/11).
    ``counts[r, n-1]`` is the number of spans of n groups taken in row r.
    """
    N, L = gids.shape
    chosen = np.zeros((N, L), dtype=bool)
    counts = np.zeros((N, max_n), dtype=np.int64)
    for r in range(N):
        valid = np.flatnonzero(gids[r] >= 0)
        if not len(valid):
            continue
        g_of = gids[r][valid]
        n_groups = int(g_of.max()) + 1
        sizes = np.bincount(g_of, minlength=n_groups).tolist()
        firsts = valid[np.unique(g_of, return_index=True)[1]]  # first position of each group
        budget = int(k[r])
        cdf = _ngram_draw_cdf(budget, max_n)
        draws = (np.searchsorted(cdf, u_ngram[r, firsts], side="right") + 1).tolist()
        starts, lens = [], []
        g = 0
        while g < n_groups:
            n = min(draws[g], n_groups - g)
            starts.append(g)
            lens.append(n)
            g += n
        keys = group_keys[r, firsts[starts]]
        taken = np.zeros(n_groups, dtype=bool)
        count = 0
        for i in np.argsort(keys, kind="stable").tolist():
            if count >= budget:
                break
            g, n = starts[i], lens[i]
            size = sum(sizes[g:g + n])
            while n > 1 and count + size > budget:
                n -= 1
                size -= sizes[g + n]
            if count + size > budget:
                continue
            taken[g:g + n] = True
            count += size
            counts[r, n - 1] += 1
        chosen[r, valid] = taken[g_of]
    return chosen, counts


def replace_80_10_10(input_ids: np.ndarray, chosen: np.ndarray, noise: MaskNoise,
                     mask_id: int) -> np.ndarray:
    """[N, L]: ids after replacement at ``chosen`` positions (80% mask, 10% keep, 10% random)."""
    return _replace(input_ids, np.flatnonzero(chosen), noise, mask_id)


def _replace(input_ids: np.ndarray, flat: np.ndarray, noise: MaskNoise, mask_id: int
             ) -> np.ndarray:
    """:func:`replace_80_10_10` at the flat (row-major) indexes ``flat`` of the chosen positions."""
    out = input_ids.copy()
    orig = input_ids.ravel()[flat]
    out.ravel()[flat] = np.where(noise.u_mask.ravel()[flat] < 0.8, mask_id,
                                 np.where(noise.u_keep.ravel()[flat] < 0.5, orig,
                                          noise.random_ids.ravel()[flat]))
    return out


def gather_predictions(original_ids: np.ndarray, chosen: np.ndarray,
                       max_predictions_per_seq: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sorted positions [N, P], labels [N, P], weights [N, P] float32 and counts [N] of ``chosen``."""
    counts = chosen.sum(axis=1)
    if (counts > max_predictions_per_seq).any():
        raise ValueError("more chosen positions than max_predictions_per_seq")
    return _gather(original_ids, np.flatnonzero(chosen), counts, max_predictions_per_seq)


def _gather(original_ids: np.ndarray, flat: np.ndarray, counts: np.ndarray, P: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`gather_predictions` from the flat (row-major, so sorted) chosen indexes."""
    N, L = original_ids.shape
    rows, cols = np.divmod(flat, L)
    slot = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    dest = rows * P + slot
    positions = np.zeros((N, P), dtype=np.int64)
    positions.ravel()[dest] = cols
    labels = np.zeros((N, P), dtype=original_ids.dtype)
    labels.ravel()[dest] = original_ids.ravel()[flat]
    real = np.arange(P)[None, :] < counts[:, None]
    return positions, labels, real.astype(np.float32), counts


def mask_batch(input_ids: np.ndarray, lengths: np.ndarray, noise: MaskNoise, *, cls_id: int,
               sep_id: int, mask_id: int, masked_lm_prob: float, max_predictions_per_seq: int,
               continuation: np.ndarray | None = None, ngram: int = 1) -> MaskedBatch:
    """Google's masking of a padded batch ``input_ids`` [N, L] (see the module docstring).

    ``continuation`` (bool [N, L]) turns on whole-word masking; None masks pieces independently.
    ``ngram`` > 1 masks spans of up to that many groups (needs ``noise.u_ngram``).
    """
    cands = candidate_mask(input_ids, lengths, cls_id, sep_id)
    k = num_to_predict(lengths, masked_lm_prob, max_predictions_per_seq)
    spans = None
    if ngram > 1:
        if noise.u_ngram is None:
            raise ValueError("n-gram masking needs MaskNoise.u_ngram")
        chosen, spans = choose_ngram_positions(group_ids(cands, continuation), k, noise.group_keys,
                                           noise.u_ngram, ngram)
    elif continuation is None:  # every group is one position: the k smallest keys (same result)
        keys = np.where(cands, noise.group_keys, np.inf)
        L = keys.shape[1]
        kth = np.sort(keys, axis=1)[np.arange(len(k)), np.clip(k, 1, L) - 1][:, None]
        chosen = (keys <= kth) & cands
    else:
        chosen = choose_positions(group_ids(cands, continuation), k, noise.group_keys)
    counts = chosen.sum(axis=1)
    if (counts > max_predictions_per_seq).any():
        raise ValueError("more chosen positions than max_predictions_per_seq")
    flat = np.flatnonzero(chosen)
    positions, labels, weights, counts = _gather(input_ids, flat, counts,
                                                 max_predictions_per_seq)
    return MaskedBatch(_replace(input_ids, flat, noise, mask_id), positions, labels, weights,
                       counts, spans)


def generator_noise(rng: np.random.Generator, shape: tuple[int, int],
                    vocab_size: int, ngram: bool = False) -> MaskNoise:
    """:class:`MaskNoise` of ``shape`` [N, L] drawn from a numpy generator (``u_ngram`` last,
    only when ``ngram``, so the other draws do not depend on it)."""
    noise = MaskNoise(rng.random(shape), rng.random(shape, dtype=np.float32),
                      rng.random(shape, dtype=np.float32),
                      rng.integers(0, vocab_size, size=shape, dtype=np.int32))
    if ngram:
        noise = MaskNoise(noise.group_keys, noise.u_mask, noise.u_keep, noise.random_ids,
                          rng.random(shape))
    return noise


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser (a strong 64-bit mixer), element-wise on uint64 (wrapping)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def _counter_uniform(key: int, rows: np.ndarray, L: int, stream: int) -> np.ndarray:
    base = _splitmix64(np.array([(key * 4 + stream) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    r = _splitmix64(base ^ np.asarray(rows, dtype=np.uint64))[:, None]
    h = _splitmix64(r ^ np.arange(L, dtype=np.uint64)[None, :])
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def counter_noise(key: int, rows: np.ndarray, L: int, vocab_size: int,
                  ngram: bool = False) -> MaskNoise:
    """:class:`MaskNoise` [len(rows), L] that depends only on ``(key, row)``, not on the batch.

    Used for dynamic masking: ``key`` mixes the seed and the epoch, ``rows`` are global row ids.
    """
    rand = np.minimum((_counter_uniform(key, rows, L, 3) * vocab_size).astype(np.int64),
                      vocab_size - 1)
    u_ngram = None
    if ngram:  # its own key: stream 4 of ``key`` would be stream 0 of ``key + 1`` (next epoch)
        key2 = int(_splitmix64(np.array([key ^ 0x6E6772616D], dtype=np.uint64))[0])
        u_ngram = _counter_uniform(key2, rows, L, 0)
    return MaskNoise(_counter_uniform(key, rows, L, 0), _counter_uniform(key, rows, L, 1),
                     _counter_uniform(key, rows, L, 2), rand, u_ngram)
