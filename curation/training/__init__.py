"""Training that any plan can drive: the Trainer, its config, the online-selector protocol, the entry point.

``train_version`` and ``TrainOutcome`` (catalog, MLflow) load on first use, so the Trainer alone imports
without the tracking stack (a GPU machine that has only torch, numpy and pyarrow runs it).
"""

from curation.training.config import TrainConfig
from curation.training.data import TrainingData
from curation.training.selector import OnlineSelector
from curation.training.trainer import Callback, Trainer, TrainResult

__all__ = [
    "Callback",
    "OnlineSelector",
    "TrainConfig",
    "TrainOutcome",
    "TrainResult",
    "Trainer",
    "TrainingData",
    "train_version",
]


def __getattr__(name: str):
    if name in ("TrainOutcome", "train_version"):
        from curation.training import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
