"""Sparse updates (Prapas et al. 2021): ship only the top-k of each update, keep the rest as residual.

The sender mirrors the deployed replica. For each parameter tensor it takes the gap between the
trained and the deployed values (the new update plus everything not shipped before: error
feedback), keeps the k = max(1, ceil(rho * numel)) entries largest in magnitude, and ships them.
The replica adds them. Nothing is lost, only delayed: the unshipped part stays in the gap and
competes again next time. Non-float tensors (counters) are shipped whole.

Values: a sparse update (rho < 1) ships each entry as the float16 value the replica will add;
the float16 rounding stays in the gap (the mirror adds exactly what the replica adds), so it is
shipped later like any residual. Entries float16 cannot carry (|gap| below 2**-14 or above its
range) are shipped as (index, trained float32 value) assignments, so the gap always drains to
exactly zero. A dense update (rho = 1) ships float32 adds, and assignments where a float32 add
would not land exactly, so rho = 1 deploys the trained model bit for bit.

Wire format (``curation-sparse-update/2``, no pickle): the magic ``CSU2``, a little-endian uint32
header length, a compact JSON header (``m`` the trained model, ``b`` base, ``s`` sequence, ``r`` rho,
``v`` the added values' dtype, ``t`` per tensor [name, added count, their index bytes, assigned
count, their index bytes], ``w`` per whole tensor [name, dtype, shape]), then the sections back
to back: per tensor the sorted indices as LEB128 varints of their gaps (index[j] - index[j-1] - 1)
and their values, then the assignments likewise, then whole non-float tensors as raw bytes. At
rho = 1e-3 an entry costs about 2 + 2 bytes; the header about 30 bytes per tensor.

Devices: the sender's mirror and residual live on the device of the weights they start from (or
``Sparsifier.to``): the gap, the top-k and the mirror's update run there, and only the shipped
(index, value) pairs come to the CPU to be serialised. The replica is on the CPU; both add the same
float32 values at distinct indices, so a GPU mirror equals a CPU replica bit for bit.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from curation.errors import CurationError
from curation.training.trainer import Callback

FORMAT = "curation-sparse-update/2"
MAGIC = b"CSU2"
HALF_MIN = 2.0**-14  # the smallest normal float16: smaller gaps are assigned in float32
HALF_MAX = 65504.0

Pairs = tuple[np.ndarray, np.ndarray]  # sorted flat indices (int64) and their values


@dataclass
class SparseUpdate:
    """One shipped update: per tensor, added (index, value) pairs, assigned pairs, or a whole non-float tensor."""

    model_version: str  # the trained model version this update comes from
    base_version: str  # the replica's base model it applies to
    sequence: int  # 1, 2, ... within the lineage
    rho: float
    sparse: dict[str, Pairs] = field(default_factory=dict)  # added (float16, or float32 when dense)
    exact: dict[str, Pairs] = field(default_factory=dict)  # assigned (float32)
    dense: dict[str, np.ndarray] = field(default_factory=dict)  # whole non-float tensors

    @property
    def nbytes(self) -> int:
        """The payload: encoded indices, values and whole tensors (the header comes on top, see to_bytes)."""
        pairs = [*self.sparse.values(), *self.exact.values()]
        return sum(len(_varint(_gaps(i))) + v.nbytes for i, v in pairs) + sum(a.nbytes for a in self.dense.values())

    def to_bytes(self) -> bytes:
        """The wire format of the module docstring."""
        half = all(v.dtype == np.float16 for _, v in self.sparse.values())
        tensors, whole, sections = [], [], []
        for name in dict.fromkeys([*self.sparse, *self.exact]):
            entry = [name]
            for pairs, dtype in (
                (self.sparse.get(name), np.float16 if half else np.float32),
                (self.exact.get(name), np.float32),
            ):
                idx = _varint(_gaps(pairs[0])) if pairs is not None else np.empty(0, np.uint8)
                entry += [0 if pairs is None else len(pairs[0]), len(idx)]
                sections += [idx.tobytes(), b"" if pairs is None else np.asarray(pairs[1], dtype=dtype).tobytes()]
            tensors.append(entry)
        for name, value in self.dense.items():
            value = np.asarray(value)
            whole.append([name, value.dtype.str, list(value.shape)])
            sections.append(value.tobytes())
        header = json.dumps(
            {
                "m": self.model_version,
                "b": self.base_version,
                "s": self.sequence,
                "r": self.rho,
                "v": "<f2" if half else "<f4",
                "t": tensors,
                "w": whole,
            },
            separators=(",", ":"),
        ).encode()
        return b"".join([MAGIC, struct.pack("<I", len(header)), header, *sections])

    @classmethod
    def from_bytes(cls, payload: bytes) -> SparseUpdate:
        try:
            return cls._parse(memoryview(payload))
        except CurationError:
            raise
        except Exception as exc:  # any corruption is one user-facing line
            raise CurationError(f"sparse update is unreadable ({type(exc).__name__})", "ship it again") from None

    @classmethod
    def _parse(cls, payload: memoryview) -> SparseUpdate:
        if bytes(payload[:3]) == MAGIC[:3] and bytes(payload[:4]) != MAGIC:
            raise CurationError(
                f"sparse update has format {bytes(payload[:4])!r}, expected {MAGIC!r} ({FORMAT})", "ship it again"
            )
        if bytes(payload[:4]) != MAGIC:
            raise ValueError("magic")
        (size,) = struct.unpack("<I", payload[4:8])
        header = json.loads(bytes(payload[8 : 8 + size]))
        update = cls(str(header["m"]), str(header["b"]), int(header["s"]), float(header["r"]))
        added = np.dtype({"<f2": np.float16, "<f4": np.float32}[header["v"]])
        offset = 8 + size

        def take(nbytes: int, dtype: np.dtype) -> np.ndarray:
            nonlocal offset
            if nbytes < 0 or offset + nbytes > len(payload):
                raise ValueError("truncated")
            array = np.frombuffer(payload[offset : offset + nbytes], dtype=dtype).copy()
            offset += nbytes
            return array

        for name, *counts in header["t"]:
            for (count, idx_bytes), dtype, target in (
                (counts[:2], added, update.sparse),
                (counts[2:], np.dtype(np.float32), update.exact),
            ):
                idx = _ungaps(_unvarint(take(int(idx_bytes), np.dtype(np.uint8)), int(count)))
                values = take(int(count) * dtype.itemsize, dtype)
                if count:
                    target[str(name)] = (idx, values)
        for name, dtype, shape in header["w"]:
            dtype, shape = np.dtype(str(dtype)), [int(n) for n in shape]
            if dtype.hasobject or dtype.kind not in "biuf":
                raise ValueError("whole tensors are plain numbers")
            update.dense[str(name)] = take(dtype.itemsize * math.prod(shape), dtype).reshape(shape)
        if offset != len(payload):
            raise ValueError("trailing bytes")
        return update


def _gaps(idx: np.ndarray) -> np.ndarray:
    """Sorted distinct indices -> index[j] - index[j-1] - 1 (index[0] for the first), all >= 0."""
    idx = np.asarray(idx, dtype=np.int64)
    return np.diff(idx, prepend=-1) - 1


def _ungaps(gaps: np.ndarray) -> np.ndarray:
    return np.cumsum(gaps.astype(np.int64) + 1) - 1


_VARINT_STEPS = np.uint64(1) << np.arange(7, 64, 7, dtype=np.uint64)  # 2**7, 2**14, ...: one byte more from each


def _varint(values: np.ndarray) -> np.ndarray:
    """Non-negative integers as LEB128: 7 bits per byte, the high bit set on all but each value's last byte."""
    v = np.asarray(values, dtype=np.uint64)
    if not len(v):
        return np.empty(0, dtype=np.uint8)
    width = np.searchsorted(_VARINT_STEPS, v, side="right") + 1  # bytes per value
    owner = np.repeat(np.arange(len(v)), width)
    position = np.arange(len(owner)) - np.repeat(np.cumsum(width) - width, width)
    low = (v[owner] >> (np.uint64(7) * position.astype(np.uint64))) & np.uint64(0x7F)
    more = (position < width[owner] - 1).astype(np.uint64) << np.uint64(7)
    return (low | more).astype(np.uint8)


def _unvarint(data: np.ndarray, count: int) -> np.ndarray:
    """``count`` LEB128 values from exactly these bytes (anything else is an error)."""
    ends = np.flatnonzero(data < 0x80)
    if len(ends) != count or (count and ends[-1] != len(data) - 1) or (not count and len(data)):
        raise ValueError("varint section does not hold its count")
    if not count:
        return np.empty(0, dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    width = ends - starts + 1
    if width.max() > 9:  # 63 bits at most
        raise ValueError("varint too long")
    position = np.arange(len(data)) - np.repeat(starts, width)
    parts = (data & 0x7F).astype(np.uint64) << (np.uint64(7) * position.astype(np.uint64))
    return np.bitwise_or.reduceat(parts, starts).astype(np.int64)


def _k(rho: float, numel: int) -> int:
    return max(1, math.ceil(rho * numel))


class Sparsifier:
    """The sender: keeps a mirror of the replica and turns trained weights into sparse updates.

    ``half``: ship added values as float16 (default: when rho < 1; see the module docstring).
    ``scope``: top-k per tensor (the paper's rule) or over the whole model.
    ``carry``: sparse training. The caller sets its model to the mirror after each update (the model
    trains on what is deployed), so the unshipped part cannot stay in the model's weights: it is kept
    here as a residual and added to the next update. Without it the residual is implicit, trained
    weights minus mirror.
    """

    def __init__(
        self, rho: float, base_version: str, half: bool | None = None, scope: str = "tensor", carry: bool = False
    ):
        if not 0 < rho <= 1:
            raise CurationError(f"rho {rho} is outside (0, 1]", "give a fraction like 1e-3")
        if scope not in ("tensor", "model"):
            raise CurationError(f"unknown top-k scope {scope!r}", "use 'tensor' or 'model'")
        self.scope = scope
        self.rho = rho
        self.base_version = base_version
        self.half = rho < 1 if half is None else half
        self.sequence = 0
        self.mirror: dict[str, torch.Tensor] | None = None
        self.residual: dict[str, torch.Tensor] | None = {} if carry else None

    def start(self, state: dict[str, torch.Tensor], sequence: int = 0) -> Sparsifier:
        """The weights the replica holds after ``sequence`` updates (0: the base, deployed in full once);
        the mirror stays on their device."""
        self.mirror = {k: _own(v) for k, v in state.items()}
        self.sequence = sequence
        return self

    def to(self, device: torch.device | str) -> Sparsifier:
        """Keep the mirror and the residual on ``device`` (the training model's: no per-update copies)."""
        if self.mirror is not None:
            self.mirror = {k: v.to(device) for k, v in self.mirror.items()}
        if self.residual is not None:
            self.residual = {k: v.to(device) for k, v in self.residual.items()}
        return self

    @classmethod
    def following(cls, replica: Replica, rho: float) -> Sparsifier:
        """A sender that continues ``replica``'s lineage: its weights, its base and its next sequence number."""
        return cls(rho, replica.base_version).start(replica.state, replica.sequence)

    def update(self, state: dict[str, torch.Tensor], model_version: str) -> SparseUpdate:
        """The top-k of (trained - deployed); the mirror advances as the replica will."""
        if self.mirror is None:
            raise RuntimeError("Sparsifier.start() first")
        self.sequence += 1
        update = SparseUpdate(model_version, self.base_version, self.sequence, self.rho)
        gaps = {}
        for name, value in state.items():
            deployed = self.mirror[name]
            trained = value.detach().to(deployed.device)
            if trained.is_floating_point():
                gaps[name] = trained.reshape(-1).float() - deployed.view(-1).float()
                if self.residual is not None and name in self.residual:
                    gaps[name] += self.residual[name].to(deployed.device)
            elif not torch.equal(trained, deployed):
                update.dense[name] = trained.cpu().numpy().copy()
                deployed.copy_(trained)
        if self.residual is not None:  # the whole gap stays behind but what the mirror takes (below)
            self.residual = gaps
        for name, idx in self._choose(gaps).items():
            flat, values = self.mirror[name].view(-1), gaps[name][idx]
            before = flat[idx]
            goal = (
                state[name].detach().to(flat.device).reshape(-1)[idx]
                if self.residual is None  # what they become
                else (before.float() + values).to(flat.dtype)
            )
            if self.half:
                miss = (values.abs() < HALF_MIN) | (values.abs() > HALF_MAX)  # float16 cannot carry them
                added = values[~miss].half()
            else:
                miss = (before + values.to(flat.dtype)) != goal  # a float32 add would not land exactly
                added = values[~miss]
            add, assign = (idx[~miss], added), (idx[miss], goal[miss].float())
            _apply(flat, add, assign)  # on the mirror's device; only the shipped pairs go to the CPU
            for target, (i, v) in ((update.sparse, add), (update.exact, assign)):
                if len(i):
                    target[name] = (i.cpu().numpy(), v.cpu().numpy())
            if self.residual is not None:
                self.residual[name][idx] -= flat[idx].float() - before.float()
        return update

    def _choose(self, gaps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per tensor, the sorted flat indices to ship: its top k = max(1, ceil(rho * numel)) nonzero gaps
        (``scope="tensor"``), or its share of the model's top ceil(rho * total) (``scope="model"``)."""
        if self.scope == "model" and gaps:
            flat = torch.cat(list(gaps.values()))
            k = _k(self.rho, flat.numel())
            top = (
                torch.topk(flat.abs(), k, sorted=False).indices
                if k < flat.numel()
                else torch.arange(flat.numel(), device=flat.device)
            )
            top, bounds = top.sort().values, np.cumsum([0] + [g.numel() for g in gaps.values()])
            cut = torch.searchsorted(top, torch.as_tensor(bounds, device=top.device)).tolist()
            chosen = {name: top[cut[i] : cut[i + 1]] - int(bounds[i]) for i, name in enumerate(gaps)}
        else:
            chosen = {}
            for name, gap in gaps.items():
                k = _k(self.rho, gap.numel())
                chosen[name] = (
                    torch.topk(gap.abs(), k, sorted=False).indices.sort().values
                    if k < gap.numel()
                    else torch.arange(gap.numel(), device=gap.device)
                )
        chosen = {name: idx[gaps[name][idx] != 0] for name, idx in chosen.items()}
        return {name: idx for name, idx in chosen.items() if len(idx)}

    def gap(self, state: dict[str, torch.Tensor]) -> float:
        """max |trained + residual - deployed| over all float tensors: what has not been shipped yet."""
        residual = self.residual or {}
        gaps = [
            (
                v.detach().to(self.mirror[k].device).float().reshape(-1)
                - self.mirror[k].float().view(-1)
                + residual.get(k, 0)
            )
            .abs()
            .max()
            for k, v in state.items()
            if v.is_floating_point() and v.numel()
        ]
        return float(torch.stack(gaps).max()) if gaps else 0.0  # one device sync


class SparseTraining(Callback):
    """Sparse training (Prapas et al. 2021): every ``every`` optimizer steps, ship the top-k of the update
    (``sender``, in carry mode) through ``ship`` and set the model to what the replica then holds, so it
    trains on the deployed weights and the trained and deployed models never differ. After training,
    ``flush()`` when ``pending`` steps are left."""

    def __init__(self, sender: Sparsifier, ship: Callable[[SparseUpdate], None], model_version: str, every: int = 1):
        if sender.residual is None:
            raise ValueError("sparse training needs a Sparsifier(carry=True)")
        self.sender, self.ship, self.model_version, self.every = sender, ship, model_version, every
        self.pending = 0  # optimizer steps since the last update

    def on_batch_end(self, epoch: int, batch: int) -> None:
        self.pending += 1
        if self.pending == self.every:
            self.flush()

    def flush(self) -> None:
        self.pending = 0
        model = self.trainer.model
        state = model.state_dict()
        self.sender.to(next(iter(state.values())).device)  # mirror and residual beside the model (no-op once there)
        self.ship(self.sender.update(state, self.model_version))
        model.load_state_dict(self.sender.mirror)


class Replica:
    """The deployed side: starts from the full weights, then applies sparse updates in sequence."""

    def __init__(self, state: dict[str, torch.Tensor], base_version: str):
        self.state = {k: _own(v, "cpu") for k, v in state.items()}
        self.base_version = base_version
        self.sequence = 0

    def apply(self, update: SparseUpdate) -> None:
        if update.base_version != self.base_version:
            raise CurationError(
                f"update {update.sequence} is for base {update.base_version!r}, this replica "
                f"serves {self.base_version!r}",
                "ship updates from the model this replica was started from",
            )
        if update.sequence != self.sequence + 1:
            raise CurationError(
                f"update {update.sequence} arrived after update {self.sequence}", "apply updates in order, without gaps"
            )
        unknown = (set(update.sparse) | set(update.exact) | set(update.dense)) - set(self.state)
        if unknown:
            raise CurationError(
                f"update names tensors the replica lacks: {sorted(unknown)[:3]}",
                "ship updates for the same architecture",
            )
        for name, value in update.dense.items():
            if value.shape != tuple(self.state[name].shape):
                raise CurationError(f"update reshapes {name}", "ship updates for the same architecture")
        for name in set(update.sparse) | set(update.exact):
            flat = self.state[name].view(-1)
            for idx, _ in filter(None, (update.sparse.get(name), update.exact.get(name))):
                if len(idx) and (idx.min() < 0 or idx.max() >= flat.numel()):
                    raise CurationError(
                        f"update indices out of range for {name}", "ship updates for the same architecture"
                    )
        for name in set(update.sparse) | set(update.exact):
            _apply(self.state[name].view(-1), update.sparse.get(name), update.exact.get(name))
        for name, value in update.dense.items():
            self.state[name].copy_(torch.from_numpy(value))
        self.sequence = update.sequence


def _own(value: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """A contiguous copy (flat views index it in logical order, whatever the source's memory format)."""
    return value.detach().to(device or value.device).clone(memory_format=torch.contiguous_format)


def _apply(flat: torch.Tensor, added: Pairs | None, assigned: Pairs | None) -> None:
    """Add the shipped values (as float32), then assign the exact entries (sender and replica run this same code,
    the sender on its mirror's device, the replica on the CPU; indices are distinct, so the adds are exact)."""
    on = {"device": flat.device}
    if added is not None:
        flat.index_add_(
            0,
            torch.as_tensor(added[0], dtype=torch.int64, **on),
            torch.as_tensor(added[1], **on).to(torch.float32).to(flat.dtype),
        )
    if assigned is not None:
        flat[torch.as_tensor(assigned[0], dtype=torch.int64, **on)] = torch.as_tensor(assigned[1], **on).to(flat.dtype)


def dense_bytes(state: dict[str, torch.Tensor]) -> int:
    """What shipping every tensor in full would cost."""
    return sum(v.numel() * v.element_size() for v in state.values())
