"""Bounding (Böther et al. 2025): decide points for sure from min/max gain bounds, repeated until nothing changes.

With k' slots still open, a pass computes every undecided point's bounds given the decisions so far
(pairwise.gain_bounds on its partition's rows, its neighbours' decisions exchanged), then

* selects v when its MIN gain is above the k'-th largest MAX gain of the other candidates: fewer than k'
  others can ever gain as much, so greedy takes v within its next k' picks. (Over all candidates that
  threshold is the (k'+1)-th largest max gain. A tie goes to the greedy: with ">=", n isolated points of
  equal utility would all be selected for one open slot.)
* discards v when its MAX gain is below the k'-th largest MIN gain: k' others always gain more, so greedy
  never reaches v.

Both thresholds are exact order statistics over values that stay on the workers (order.py). A state
per point records the pass that decided it: +p selected, -p discarded, 0 undecided.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.distributed.blocks import Block, exchange
from curation.distributed.cluster import Tasks
from curation.distributed.order import kth_largest
from curation.selection.pairwise import gain_bounds


@dataclass
class Bounding:
    """Per-partition state futures (+p / -p / 0) and one record per pass."""

    states: list
    passes: list[dict]
    selected: int
    discarded: int


def _start(block: Block) -> np.ndarray:
    return np.zeros(block.n, np.int32)


def _sign(state: np.ndarray) -> np.ndarray:
    return np.sign(state).astype(np.int8)


def _bounds(block: Block, state: np.ndarray, alpha: float, beta: float, *halo) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) gain of each undecided row given its neighbours' decisions."""
    decided = np.concatenate(halo)
    rows = state == 0
    return gain_bounds(block.graph[rows], block.utility[rows], alpha, beta, decided > 0, decided < 0)


def _sorted(bounds: tuple[np.ndarray, np.ndarray], which: int) -> np.ndarray:
    return np.sort(bounds[which])


def _decide(
    state: np.ndarray, bounds: tuple[np.ndarray, np.ndarray], select_above: float, discard_below: float, step: int
) -> np.ndarray:
    low, high = bounds
    rows = np.flatnonzero(state == 0)
    new = state.copy()
    new[rows[low > select_above]] = step
    new[rows[high < discard_below]] = -step
    return new


def _decided_at(state: np.ndarray, step: int) -> tuple[int, int]:
    return int(np.count_nonzero(state == step)), int(np.count_nonzero(state == -step))


def bound(tasks: Tasks, blocks: list, n: int, k: int, alpha: float, beta: float, span: tuple[float, float]) -> Bounding:
    """Bounding passes until one decides nothing (or nothing is left); ``k`` slots in all, ``n`` points."""
    states = [tasks.submit("state", j, _start, b) for j, b in enumerate(blocks)]
    passes, selected, discarded, step = [], 0, 0, 0
    while selected + discarded < n:
        step += 1
        open_slots = k - selected
        tasks.note(f"bounding pass {step}", span[0] + (span[1] - span[0]) * (1 - 0.5 ** (step - 1)))
        halos = exchange(
            tasks, f"bound{step}", blocks, [tasks.submit(f"sign{step}", j, _sign, s) for j, s in enumerate(states)]
        )
        bounds = [
            tasks.submit(f"bounds{step}", j, _bounds, blocks[j], states[j], alpha, beta, *halos[j])
            for j in range(len(blocks))
        ]
        select_above = kth_largest(
            tasks.client,
            [tasks.submit(f"max-gains{step}", j, _sorted, b, 1) for j, b in enumerate(bounds)],
            open_slots + 1,
        )
        discard_below = kth_largest(
            tasks.client, [tasks.submit(f"min-gains{step}", j, _sorted, b, 0) for j, b in enumerate(bounds)], open_slots
        )
        new = [
            tasks.submit(f"decide{step}", j, _decide, states[j], bounds[j], select_above, discard_below, step)
            for j in range(len(blocks))
        ]
        counts = np.sum(
            tasks.gather([tasks.submit(f"decided{step}", j, _decided_at, s, step) for j, s in enumerate(new)]), axis=0
        )
        passes.append(
            {
                "pass": step,
                "open_slots": int(open_slots),
                "select_above": select_above,
                "discard_below": discard_below,
                "selected": int(counts[0]),
                "discarded": int(counts[1]),
            }
        )
        if not counts.any():
            break
        states, selected, discarded = new, selected + int(counts[0]), discarded + int(counts[1])
    return Bounding(states, passes, selected, discarded)
