"""Labelled data made with numpy alone (no download, no extra package), for device checks and benchmarks on
machines without the mnist1d package: MNIST-1D-shaped sequences and small images.

``sequences``: MNIST-1D's recipe (Greydanus 2020) with templates of our own: per class a smooth
12-point template; per sample zero padding at a random offset (translation), a random amplitude and
shear, stretching to ``length`` points, then correlated (smoothed) and white noise. ``images``: per
class a smooth random pattern; per sample a random circular shift, brightness and white noise.
Both return ``((x_train, y_train), (x_test, y_test))`` with float32 features and int64 labels, balanced
classes, deterministic in ``seed`` (the class templates are fixed whatever the seed).
"""

from __future__ import annotations

import numpy as np

from curation.errors import CurationError

TEMPLATE_POINTS = 12
PADDED_POINTS = 36
TEMPLATE_SEED = 1234  # the class templates are the same for every seed: one task, many samples of it


def _split(x: np.ndarray, y: np.ndarray, train_split: float):
    cut = round(train_split * len(y))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def _labels(rng: np.random.Generator, samples: int, classes: int) -> np.ndarray:
    if samples < 2 or classes < 2:
        raise CurationError(
            f"synthetic data needs at least 2 samples and 2 classes, got {samples} and {classes}", "ask for more"
        )
    return rng.permutation(np.arange(samples) % classes).astype(np.int64)


def _smooth(values: np.ndarray, width: float, axis: int = -1) -> np.ndarray:
    """Gaussian smoothing along ``axis`` (circular), by FFT."""
    n = values.shape[axis]
    freq = np.fft.rfftfreq(n)
    shape = [1] * values.ndim
    shape[axis] = len(freq)
    kernel = np.exp(-2 * (np.pi * freq * width) ** 2).reshape(shape)
    return np.fft.irfft(np.fft.rfft(values, axis=axis) * kernel, n=n, axis=axis)


def sequences(
    samples: int = 5000, seed: int = 0, length: int = 40, classes: int = 10, train_split: float = 0.8
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST-1D-like sequences shaped [1, length] (see the module docstring)."""
    templates = _smooth(np.random.default_rng(TEMPLATE_SEED).normal(size=(classes, TEMPLATE_POINTS)), 1.0)
    templates /= np.abs(templates).max(axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    y = _labels(rng, samples, classes)
    offset = rng.integers(0, PADDED_POINTS - TEMPLATE_POINTS + 1, size=samples)
    position = np.arange(PADDED_POINTS)[None, :] - offset[:, None]
    inside = (position >= 0) & (position < TEMPLATE_POINTS)
    padded = np.where(inside, templates[y[:, None], np.clip(position, 0, TEMPLATE_POINTS - 1)], 0.0)
    padded *= rng.uniform(0.7, 1.3, size=(samples, 1))
    padded += rng.uniform(-0.75, 0.75, size=(samples, 1)) * np.linspace(-1, 1, PADDED_POINTS)  # shear
    grid = np.linspace(0, PADDED_POINTS - 1, length)
    x = np.stack([np.interp(grid, np.arange(PADDED_POINTS), row) for row in padded]) if samples else padded
    x += 0.6 * _smooth(rng.normal(size=x.shape), 2.0) + 0.25 * rng.normal(size=x.shape)
    return _split(x[:, None, :].astype(np.float32), y, train_split)


def images(
    samples: int = 5000,
    seed: int = 0,
    shape: tuple[int, int, int] = (3, 32, 32),
    classes: int = 10,
    train_split: float = 0.8,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Small [C, H, W] images (see the module docstring)."""
    c, h, w = shape
    patterns = np.random.default_rng(TEMPLATE_SEED).normal(size=(classes, c, h, w))
    patterns = _smooth(_smooth(patterns, h / 8, axis=2), w / 8, axis=3)
    patterns /= patterns.std(axis=(1, 2, 3), keepdims=True)
    rng = np.random.default_rng(seed)
    y = _labels(rng, samples, classes)
    shift_h, shift_w = rng.integers(-h // 8, h // 8 + 1, size=samples), rng.integers(-w // 8, w // 8 + 1, size=samples)
    rows = (np.arange(h)[None, :] - shift_h[:, None]) % h
    cols = (np.arange(w)[None, :] - shift_w[:, None]) % w
    x = patterns[
        y[:, None, None, None], np.arange(c)[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]
    ]
    x = x * rng.uniform(0.6, 1.4, size=(samples, 1, 1, 1)) + 4.0 * rng.normal(size=x.shape)
    return _split(x.astype(np.float32), y, train_split)
