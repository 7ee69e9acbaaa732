"""Sparse deployment (Prapas et al. 2021): ship only the top-k of each update, keep the rest as residual.

The sender mirrors the deployed replica. For each parameter tensor it takes the gap between the
trained and the deployed values (the new update plus everything not shipped before: error
feedback), keeps the k = max(1, ceil(rho * numel)) entries largest in magnitude, and ships them as
(index, value) pairs. The replica adds them. Nothing is lost, only delayed: the unshipped part
stays in the gap and competes again next time. Non-float tensors (counters) are shipped whole.
A float32 addition cannot always land exactly on the trained value (when the two differ greatly
in magnitude); those rare entries are shipped as (index, new value) assignments instead, so a
shipped entry is always exact and rho = 1 deploys the trained model bit for bit.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from curation.errors import CurationError

FORMAT = "curation-sparse-update/1"


@dataclass
class SparseUpdate:
    """One shipped update: per tensor, flat int32 indices and float32 values (or a whole int tensor)."""

    model_version: str  # the trained model version this update comes from
    base_version: str  # the deployment lineage it applies to
    sequence: int  # 1, 2, ... within the lineage
    rho: float
    sparse: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # added
    exact: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # assigned
    dense: dict[str, np.ndarray] = field(default_factory=dict)  # whole non-float tensors

    @property
    def nbytes(self) -> int:
        pairs = [*self.sparse.values(), *self.exact.values()]
        return sum(i.nbytes + v.nbytes for i, v in pairs) + sum(a.nbytes for a in self.dense.values())

    def to_bytes(self) -> bytes:
        """Compact, pickle-free serialisation (numpy .npz with allow_pickle=False on load)."""
        arrays = {"meta": np.array([FORMAT, self.model_version, self.base_version, str(self.sequence),
                                    repr(self.rho)])}
        for name, (idx, val) in self.sparse.items():
            arrays[f"i:{name}"], arrays[f"v:{name}"] = idx, val
        for name, (idx, val) in self.exact.items():
            arrays[f"ei:{name}"], arrays[f"ev:{name}"] = idx, val
        for name, value in self.dense.items():
            arrays[f"d:{name}"] = value
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> SparseUpdate:
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            fmt, model_version, base_version, sequence, rho = arrays.pop("meta").tolist()
        except Exception as exc:  # any corruption is one user-facing line
            raise CurationError(f"sparse update is unreadable ({type(exc).__name__})", "ship it again") from None
        if fmt != FORMAT:
            raise CurationError(f"sparse update has format {fmt!r}, expected {FORMAT!r}", "ship it again")
        update = cls(model_version, base_version, int(sequence), float(rho))
        for key, value in arrays.items():
            kind, name = key.split(":", 1)
            if kind == "i":
                update.sparse[name] = (value, arrays[f"v:{name}"])
            elif kind == "ei":
                update.exact[name] = (value, arrays[f"ev:{name}"])
            elif kind == "d":
                update.dense[name] = value
        return update


def _k(rho: float, numel: int) -> int:
    return max(1, math.ceil(rho * numel))


class Sparsifier:
    """The sender: keeps a mirror of the replica and turns trained weights into sparse updates."""

    def __init__(self, rho: float, base_version: str):
        if not 0 < rho <= 1:
            raise CurationError(f"rho {rho} is outside (0, 1]", "give a fraction like 1e-3")
        self.rho = rho
        self.base_version = base_version
        self.sequence = 0
        self.mirror: dict[str, torch.Tensor] | None = None

    def start(self, state: dict[str, torch.Tensor]) -> Sparsifier:
        """The weights the replica starts from (deployed in full once)."""
        self.mirror = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        return self

    def update(self, state: dict[str, torch.Tensor], model_version: str) -> SparseUpdate:
        """The top-k of (trained - deployed) per tensor; the mirror advances as the replica will."""
        if self.mirror is None:
            raise RuntimeError("Sparsifier.start() first")
        self.sequence += 1
        update = SparseUpdate(model_version, self.base_version, self.sequence, self.rho)
        for name, value in state.items():
            trained = value.detach().to("cpu")
            deployed = self.mirror[name]
            if not trained.is_floating_point():
                if not torch.equal(trained, deployed):
                    update.dense[name] = trained.numpy().copy()
                    deployed.copy_(trained)
                continue
            gap = (trained.float() - deployed.float()).flatten()
            k = _k(self.rho, gap.numel())
            idx = torch.topk(gap.abs(), k, sorted=False).indices if k < gap.numel() else torch.arange(gap.numel())
            values = gap[idx]
            keep = values != 0
            idx, values = idx[keep], values[keep]
            flat, target = deployed.view(-1), trained.reshape(-1)
            miss = (flat[idx] + values.to(flat.dtype)) != target[idx]  # would not land exactly
            add_idx, add_val = idx[~miss], values[~miss]
            set_idx, set_val = idx[miss], target[idx[miss]]
            if add_idx.numel():
                update.sparse[name] = (add_idx.to(torch.int32).numpy(), add_val.numpy().astype(np.float32))
            if set_idx.numel():
                update.exact[name] = (set_idx.to(torch.int32).numpy(), set_val.float().numpy().copy())
            _apply(flat, update.sparse.get(name), update.exact.get(name))
        return update

    def gap(self, state: dict[str, torch.Tensor]) -> float:
        """max |trained - deployed| over all float tensors: what has not been shipped yet."""
        return max((float((v.detach().cpu().float() - self.mirror[k].float()).abs().max())
                    for k, v in state.items() if v.is_floating_point() and v.numel()), default=0.0)


class Replica:
    """The deployed side: starts from the full weights, then applies sparse updates in sequence."""

    def __init__(self, state: dict[str, torch.Tensor], base_version: str):
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
        self.base_version = base_version
        self.sequence = 0

    def apply(self, update: SparseUpdate) -> None:
        if update.base_version != self.base_version:
            raise CurationError(f"update {update.sequence} is for deployment {update.base_version!r}, this replica "
                                f"serves {self.base_version!r}", "ship updates from the model this replica was started from")
        if update.sequence != self.sequence + 1:
            raise CurationError(f"update {update.sequence} arrived after update {self.sequence}",
                                "apply updates in order, without gaps")
        unknown = (set(update.sparse) | set(update.dense)) - set(self.state)
        if unknown:
            raise CurationError(f"update names tensors the replica lacks: {sorted(unknown)[:3]}",
                                "ship updates for the same architecture")
        for name in set(update.sparse) | set(update.exact):
            flat = self.state[name].view(-1)
            for idx, _ in filter(None, (update.sparse.get(name), update.exact.get(name))):
                if len(idx) and (idx.min() < 0 or idx.max() >= flat.numel()):
                    raise CurationError(f"update indices out of range for {name}",
                                        "ship updates for the same architecture")
            _apply(flat, update.sparse.get(name), update.exact.get(name))
        for name, value in update.dense.items():
            self.state[name].copy_(torch.from_numpy(value))
        self.sequence = update.sequence


def _apply(flat: torch.Tensor, added, assigned) -> None:
    """Add the sparse deltas, then assign the exact entries (sender and replica run the same code)."""
    if added is not None:
        flat.index_add_(0, torch.as_tensor(added[0], dtype=torch.int64), torch.as_tensor(added[1]).to(flat.dtype))
    if assigned is not None:
        flat[torch.as_tensor(assigned[0], dtype=torch.int64)] = torch.as_tensor(assigned[1]).to(flat.dtype)


def dense_bytes(state: dict[str, torch.Tensor]) -> int:
    """What shipping every tensor in full would cost."""
    return sum(v.numel() * v.element_size() for v in state.values())
