"""A training callback that raises after batch ``batch`` of epoch ``epoch``: a crash mid-run, for resume tests."""

from curation.training.trainer import Callback


class CrashAt(Callback):
    def __init__(self, epoch: int, batch: int):
        self.at = (epoch, batch)

    def on_batch_end(self, epoch, batch):
        if (epoch, batch) == self.at:
            raise RuntimeError("simulated crash")
