"""Random per-epoch plans: soft sampling (with replacement), RS2 (distinct per epoch), uniform subsets.

Draws are made block by block over the index space so that a plan for N = 10^9 never exists
as one array. For epoch ``e`` the ``m`` draws are first split over blocks of ``BLOCK`` indices
(multinomial for soft sampling, multivariate hypergeometric for RS2), then drawn inside each block
from a generator seeded by ``(seed, e, block)``. The multiset of draws has exactly the law of
``m`` i.i.d. uniform draws (soft) or of a uniform ``m``-subset (RS2); every epoch is re-derivable
bit for bit from ``(seed, epoch)``. With N <= BLOCK there is one block and the draws come in plain
i.i.d. order; above it, blocks are emitted in a seeded random order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from curation.errors import CurationError
from curation.selection.base import SelectionInput, Selector, check_seed, register_selector, resolve_budget
from curation.selection.plans import FullPlan, Plan

BLOCK = 1 << 20  # a power of two (in-block positions are exact with a bit mask) that fits in cache
SOFT, RS2 = "soft", "rs2"


def _rng(*key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in key])))


def _blocks(n: int) -> np.ndarray:
    """Lengths of the index blocks covering 0..n-1."""
    full, rest = divmod(n, BLOCK)
    return np.array([BLOCK] * full + ([rest] if rest else []), dtype=np.int64)


def per_epoch(n: int, ratio: float) -> int:
    """m = ceil(r * N), the draws per epoch."""
    if not 0 < ratio <= 1:
        raise CurationError(f"ratio {ratio} is outside (0, 1]", "give a sampling ratio like 0.1")
    return max(1, math.ceil(ratio * n - 1e-9))


def _uniform_below(rng: np.random.Generator, bound: int, size: int) -> np.ndarray:
    """``size`` exact uniform integers in [0, bound) as uint32 (bit mask or Lemire with rejection)."""
    raw = rng.bit_generator.random_raw((size + 1) // 2).view(np.uint32)[:size]
    if bound & (bound - 1) == 0:
        return raw & np.uint32(bound - 1)
    product = raw.astype(np.uint64) * np.uint64(bound)
    out = (product >> np.uint64(32)).astype(np.uint32)
    threshold = (1 << 32) % bound  # reject the low products that would make some values likelier
    bad = np.flatnonzero(product.astype(np.uint32) < threshold)
    if bad.size:
        out[bad] = _uniform_below(rng, bound, bad.size)
    return out


def block_counts(kind: str, seed: int, epoch: int, n: int, m: int) -> np.ndarray:
    """How many of epoch ``epoch``'s draws fall in each block."""
    lengths = _blocks(n)
    if len(lengths) == 1:
        return np.array([m], dtype=np.int64)
    rng = _rng(seed, epoch, -1 % (1 << 32))
    if kind == SOFT:
        return rng.multinomial(m, lengths / n).astype(np.int64)
    return rng.multivariate_hypergeometric(lengths, m).astype(np.int64)


def block_draws(kind: str, seed: int, epoch: int, block: int, count: int, length: int) -> np.ndarray:
    """The in-block positions (uint32) drawn for one (epoch, block)."""
    rng = _rng(seed, epoch, block)
    if kind == SOFT:
        return _uniform_below(rng, length, count)
    return rng.choice(length, size=count, replace=False, shuffle=True).astype(np.uint32)


def epoch_positions(kind: str, seed: int, epoch: int, n: int, m: int) -> Iterator[np.ndarray]:
    """Epoch ``epoch``'s positions in 0..n-1 (int64), one block at a time, blocks in seeded order."""
    lengths = _blocks(n)
    counts = block_counts(kind, seed, epoch, n, m)
    order = (
        np.arange(len(lengths)) if len(lengths) == 1 else _rng(seed, epoch, -2 % (1 << 32)).permutation(len(lengths))
    )
    for b in order:
        if counts[b]:
            yield block_draws(kind, seed, epoch, int(b), int(counts[b]), int(lengths[b])).astype(np.int64) + b * BLOCK


class SampledPlan(Plan):
    """A generated plan: positions re-derived from (seed, epoch), mapped to the version's sample ids."""

    def __init__(self, version_id: int, sample_ids: np.ndarray, kind: str, ratio: float, seed: int):
        super().__init__(version_id)
        self.method, self.kind, self.ratio, self.seed = kind, kind, ratio, seed
        self.sample_ids = np.asarray(sample_ids, dtype=np.int64)
        self.m = per_epoch(len(self.sample_ids), ratio)

    def positions(self, epoch: int) -> np.ndarray:
        return np.concatenate(list(epoch_positions(self.kind, self.seed, epoch, len(self.sample_ids), self.m)))

    def ids(self, epoch: int) -> np.ndarray:
        return self.sample_ids[self.positions(epoch)]

    def describe(self) -> dict:
        return {
            "method": self.kind,
            "version_id": self.version_id,
            "ratio": self.ratio,
            "seed": self.seed,
            "per_epoch": self.m,
        }


@register_selector
class SoftSampling(Selector):
    """Soft sampling: every epoch m = ceil(ratio*N) indices i.i.d. uniform WITH replacement, fresh each epoch."""

    name = SOFT
    generated = True

    def __init__(self, ratio: float = 0.1, seed: int = 0):
        self.ratio = ratio
        self.seed = seed

    def _fit(self, data: SelectionInput) -> Plan:
        check_seed(self.seed)
        return SampledPlan(data.version_id, data.sample_ids, self.name, float(self.ratio), int(self.seed))


@register_selector
class RS2Sampling(SoftSampling):
    """RS2 (Okanovic et al. 2023): every epoch a fresh uniform subset of m DISTINCT indices."""

    name = RS2


@register_selector
class UniformSubset(Selector):
    """A fixed uniform random subset of ``budget`` samples, the same every epoch (memory: the subset and a block)."""

    name = "uniform"

    def __init__(self, budget: int | float = 0.1, seed: int = 0):
        self.budget = budget
        self.seed = seed

    def _fit(self, data: SelectionInput) -> Plan:
        check_seed(self.seed)
        k = resolve_budget(self.budget, data.n)  # RS2's first epoch: k distinct rows, drawn a block at a time
        rows = np.sort(np.concatenate(list(epoch_positions(RS2, int(self.seed), 0, data.n, k))))
        return self._subset(data, rows)


@register_selector
class FullData(Selector):
    """Every sample every epoch: the baseline every method is compared with."""

    name = "full"

    def __init__(self):
        pass

    def _fit(self, data: SelectionInput) -> Plan:
        self.selected_ = data.sample_ids
        return FullPlan(data.version_id, data.sample_ids)
