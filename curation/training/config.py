"""TrainConfig: every knob of a training run; its fields are the run's MLflow params."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from curation.choices import Amp, Augment, DataPath, Device
from curation.errors import CurationError

# Used where neither the user nor the architecture's registered defaults give a value.
FALLBACK = {
    "epochs": 20,
    "batch_size": 128,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "label_smoothing": 0.0,
    "optimizer": "adamw",
    "schedule": "cosine",
}


class TrainConfig(BaseModel):
    """A training run's settings; ``None`` means the architecture's default (see ``resolve``)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True)

    arch: str | None = Field(None, description="architecture name; default: chosen from the feature shape")
    epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    candidate_batch_size: int | None = Field(
        None, ge=1, description="online selectors: rows scored per selection step (forward); default batch_size"
    )
    eval_every: float | None = Field(
        None,
        gt=0,
        description="evaluate each time this fraction of a full-data epoch's compute is spent "
        "(and at the start and end); default: once per epoch",
    )
    budget: float | None = Field(
        None,
        gt=0,
        le=1,
        description="compute budget: this share of the full run's backward samples (N x epochs); "
        "the run stops there and its learning rate decays linearly to 0 at that point",
    )
    lr: float | None = Field(None, gt=0)
    weight_decay: float | None = Field(None, ge=0)
    label_smoothing: float | None = Field(None, ge=0, lt=1)
    optimizer: Literal["adamw", "sgd"] | None = None  # sgd uses momentum 0.9
    schedule: Literal["cosine", "constant"] | None = None  # cosine: per step, down to 0 at the last step
    seed: int = Field(0, ge=0)
    device: Device = Device.auto
    amp: Amp | None = Field(
        None,
        description="mixed precision (autocast): bf16, fp16 (with a GradScaler) or off; default: bf16 on a "
        "GPU that supports it, else fp16 on a GPU, off on the CPU",
    )
    compile: bool = Field(False, description="run the model's forward through torch.compile")
    workers: int = Field(
        2,
        ge=0,
        description="DataLoader worker processes that decode images and read a streamed split (at most as many "
        "as the available memory holds, 384 MB each)",
    )
    data_path: DataPath = Field(
        DataPath.auto,
        description="hold the splits in memory, stream them from disk, or auto: stream a split that would take "
        "over half of what the available memory (a cgroup's limit included) leaves after 512 MB for the rest "
        "of the run",
    )
    augment: Augment | None = Field(
        None, description="image versions: a random crop (and a horizontal flip) of every training sample"
    )
    nproc: int = Field(
        1,
        ge=1,
        description="data-parallel training processes (torch.distributed: gloo on the CPU, NCCL with one GPU each)",
    )

    @classmethod
    def make(cls, **values) -> TrainConfig:
        """Validate user input; a bad value becomes a one-line CurationError."""
        try:
            return cls(**values)
        except ValidationError as exc:
            e = exc.errors()[0]
            where = ".".join(str(p) for p in e["loc"]) or "config"
            raise CurationError(
                f"bad training setting {where!r}: {e['msg']}", f"fix --{where.replace('_', '-')}"
            ) from None

    def resolve(self, feature_shape, images: bool = False) -> TrainConfig:
        """Every field filled: the user's value, else the architecture's default, else ``FALLBACK``.

        ``images``: the version's features are decoded images (the default architecture is then resnet2d)."""
        from models import default_for, get

        if self.augment and len(feature_shape) != 3:
            raise CurationError(
                f"--augment needs image features [channels, height, width], not {list(feature_shape)}",
                "drop --augment for this version",
            )
        arch = self.arch or default_for(feature_shape, images)
        defaults = {**FALLBACK, **get(arch).defaults}
        filled = {k: (v if v is not None else defaults.get(k)) for k, v in self.model_dump().items()}
        return TrainConfig.make(**{**filled, "arch": arch})
