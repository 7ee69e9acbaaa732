"""Training that any plan can drive: the Trainer, its config, the online-selector protocol, the entry point."""

from curation.training.config import TrainConfig
from curation.training.data import TrainingData
from curation.training.run import TrainOutcome, train_version
from curation.training.selector import OnlineSelector
from curation.training.trainer import Callback, Trainer, TrainResult

__all__ = ["Callback", "OnlineSelector", "TrainConfig", "TrainOutcome", "TrainResult", "Trainer", "TrainingData",
           "train_version"]
