"""The closed sets of values the library accepts, one definition each.

The modules that own each idea use these (TrainConfig the device, ContinualConfig the mode and the
history strategy, retraining the way updates ship, the catalog the run status), and so do the CLI
(as choices its --help lists and typer checks) and the flows. They live in this light module so that
`curation --help` does not import torch or Dask to show them. Members are strings: they compare
equal to, and are stored and logged as, their values.
"""

from __future__ import annotations

from enum import StrEnum


class Device(StrEnum):
    """Where training runs: the GPU when one is found (auto), or as named."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Amp(StrEnum):
    """Mixed precision of training on a GPU: bfloat16 or float16 autocast (float16 with a gradient scaler), or off."""

    bf16 = "bf16"
    fp16 = "fp16"
    off = "off"


class Augment(StrEnum):
    """Training-time augmentation of image versions: random crops, or random crops and horizontal flips."""

    crop = "crop"
    crop_flip = "crop-flip"


class DataPath(StrEnum):
    """How training reads a split: held in memory, streamed from disk, or (auto) streamed when too big."""

    auto = "auto"
    memory = "memory"
    stream = "stream"


class Engine(StrEnum):
    """Where a selection or scoring runs: in this process, or on a Dask cluster (selection: the pairwise method)."""

    local = "local"
    dask = "dask"


class Mode(StrEnum):
    """How a lineage keeps its model current: proactive steps, full retraining, or full every few chunks."""

    proactive = "proactive"
    full = "full"
    periodic = "periodic"


class Strategy(StrEnum):
    """Which history rows fill a proactive batch: uniform, the last chunks (window), recent ones favoured (time)."""

    uniform = "uniform"
    window = "window"
    time = "time"


class Policy(StrEnum):
    """How many passes a proactive step spends: the same at every step, or more after a drift (same budget)."""

    fixed = "fixed"
    reactive = "reactive"


class Ship(StrEnum):
    """How retraining ships sparse updates: one per training batch (sparse training), or one per promoted model."""

    batch = "batch"
    model = "model"


class RunStatus(StrEnum):
    """A training run's status in the catalog."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
