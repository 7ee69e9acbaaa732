"""What a version's features go through when they are read: standardization of tabular features, decoding
of encoded images.

A version's manifest names its transform: ``None`` (features as stored), ``standardize`` (per-feature mean
and std fitted on the train split at ingest) or ``image`` (decode PNG/JPEG bytes with Pillow, resize to
``size``, scale to [0, 1], normalize by per-channel ``mean``/``std`` of the train split). ``apply`` is the
one place a transform happens; ``VersionReader`` calls it on every read, so training, scoring, selection
and retraining all see the same inputs.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pyarrow as pa

from curation.errors import CurationError

DECODE_BATCH = 512  # images decoded at a time while fitting the normalization
GRAY = ("1", "L", "LA", "I", "I;16", "F")  # Pillow modes read as one channel; any other makes the version RGB


def features_numpy(table: pa.Table) -> np.ndarray:
    """The features column as an (N, D) float32 array without copying where Arrow allows."""
    column = table.column("features").combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)


class StandardizeFit:
    """Per-feature mean and std of the train split, fitted a batch at a time (Chan et al.'s pairwise update of
    the mean and the sum of squared deviations, in float64); constant features keep std 1."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, values: np.ndarray) -> None:
        """Train rows of one batch, (rows, D)."""
        if len(values) == 0:
            return
        with np.errstate(all="ignore"):  # non-finite values are refused with their row by the caller
            batch = values.astype(np.float64)
            mean = batch.mean(axis=0)
            m2 = ((batch - mean) ** 2).sum(axis=0)
        n = self.n + len(batch)
        delta = mean - self.mean
        self.mean = self.mean + delta * len(batch) / n
        self.m2 = self.m2 + m2 + delta**2 * self.n * len(batch) / n
        self.n = n

    def transform(self) -> dict:
        if self.n == 0:
            raise CurationError(
                "the train split is empty: nothing to fit the standardization on",
                "give the data some rows in the 'train' split",
            )
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.sqrt(self.m2 / self.n).astype(np.float32)
        std[~(std > 1e-12)] = 1.0
        return {"kind": "standardize", "mean": mean.tolist(), "std": std.tolist()}


def _open(blob: bytes, where: str):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(blob))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, TypeError, Image.DecompressionBombError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CurationError(f"cannot decode image {where}: {first}", "give PNG or JPEG files only") from None
    return image


def _pixels(image, channels: int, size: Sequence[int]) -> np.ndarray:
    """One image as a (C, H, W) float32 array in [0, 1]."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    height, width = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def image_transform(
    batches: Callable[[], Iterable[tuple[Sequence[bytes], Sequence[str]]]],
    train: np.ndarray,
    size: Sequence[int] | None = None,
) -> dict:
    """Check every image decodes (and has one size unless ``size`` resizes them) and fit the normalization on
    the ``train`` rows, in two passes over ``batches()``: (encoded images, where each came from, for the
    one-line errors), a batch at a time."""
    channels, sizes, seen = 1, set(), 0
    for blobs, names in batches():
        for blob, name in zip(blobs, names):
            image = _open(blob, name)
            if image.mode not in GRAY:
                channels = 3
            sizes.add((image.height, image.width))
            if size is None and len(sizes) > 1:
                found = ", ".join(f"{w}x{h}" for h, w in sorted(sizes))
                raise CurationError(
                    f"images have different sizes ({found}; first odd one: {name})",
                    "resize them with --image-size HEIGHTxWIDTH",
                )
        seen += len(blobs)
    if seen != len(train):
        raise CurationError(f"{seen} images for {len(train)} labels", "give one label per image")
    shape = [int(s) for s in (size or next(iter(sizes)))]
    base = {"kind": "image", "channels": channels, "size": shape, "mean": [0.0] * channels, "std": [1.0] * channels}
    total, total_sq, count, lo = np.zeros(channels), np.zeros(channels), 0, 0
    for blobs, _ in batches():
        kept = [b for b, keep in zip(blobs, train[lo : lo + len(blobs)]) if keep]
        lo += len(blobs)
        for start in range(0, len(kept), DECODE_BATCH):
            x = decode(kept[start : start + DECODE_BATCH], base).astype(np.float64)
            total += x.sum(axis=(0, 2, 3))
            total_sq += (x**2).sum(axis=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean**2, 0.0))
    std[~(std > 1e-6)] = 1.0
    return {**base, "mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist()}


def decode(blobs: Sequence[bytes], transform: dict) -> np.ndarray:
    """Encoded images as an (N, C, H, W) float32 array: resized, scaled to [0, 1], normalized."""
    channels, size = transform["channels"], transform["size"]
    out = np.empty((len(blobs), channels, *size), dtype=np.float32)
    for i, blob in enumerate(blobs):
        out[i] = _pixels(_open(blob, f"at row {i}"), channels, size)
    mean = np.asarray(transform["mean"], np.float32)[:, None, None]
    std = np.asarray(transform["std"], np.float32)[:, None, None]
    return (out - mean) / std


def _with_features(table: pa.Table, drop: str, values: np.ndarray) -> pa.Table:
    width = int(np.prod(values.shape[1:]))
    flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    column = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), width)
    index = table.column_names.index(drop)
    return table.set_column(index, "features", column)


def apply(table: pa.Table, transform: dict | None) -> pa.Table:
    """The table with its features as the model sees them (a no-op for tables without features or images)."""
    kind = (transform or {}).get("kind")
    if kind == "standardize" and "features" in table.column_names:
        mean, std = np.asarray(transform["mean"], np.float32), np.asarray(transform["std"], np.float32)
        return _with_features(table, "features", (features_numpy(table) - mean) / std)
    if kind == "image" and "image" in table.column_names:
        return _with_features(table, "image", decode(table.column("image").to_pylist(), transform))
    return table


def augment(x, generator, flip: bool = True, pad: int | None = None):
    """Random crop and, with ``flip``, horizontal flip of an (N, C, H, W) batch, per sample: the training-time
    option for image versions. The crop pads each side by ``pad`` pixels (default: an eighth of the smaller
    side, at least 1; 4 for 32x32) repeating the edge, then cuts a window of the original size."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = x.shape
    pad = max(1, min(h, w) // 8) if pad is None else pad
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).tolist()
    out = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if flip:
        mirrored = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out[mirrored] = out[mirrored].flip(-1)
    return out
