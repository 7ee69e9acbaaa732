"""Checkpoints: one file per run, replaced atomically every epoch, loadable with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

import torch

from curation.errors import CurationError
from curation.faults import kill_point
from curation.files import write_atomic

FORMAT = "curation-checkpoint/1"


def save_checkpoint(path: Path, state: dict) -> None:
    """Replace ``path`` atomically and durably (``write_atomic``)."""

    def write(tmp: Path) -> None:
        torch.save({"format": FORMAT, **state}, tmp)
        kill_point("checkpoint:before-rename")

    write_atomic(path, write)


def load_checkpoint(path: Path) -> dict:
    """The checkpoint's state on the CPU; a one-line error for a missing, corrupted or foreign file."""
    if not path.is_file():
        raise CurationError(f"checkpoint {path} does not exist", "train again without --resume")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to unpickle untrusted bytes means the file is unusable
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CurationError(
            f"checkpoint {path} is corrupted or not a checkpoint ({first})",
            "delete it and train again without --resume",
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CurationError(f"{path} is not a curation checkpoint", "train again without --resume")
    return state
