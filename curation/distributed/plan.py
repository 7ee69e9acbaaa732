"""A selection plan written as partitioned Parquet: one part per graph partition, the folder named by its hash.

Parts are ``part-XXXXX.parquet`` with the plan columns (``epoch`` = -1 for every epoch, ``sample_id``,
``weight``); the folder's hash is DVC's folder hash of its parts (``store.folder_md5``), so the same subset gives
the same folder, and a part changed by hand changes the hash.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.data.store import file_md5
from curation.distributed.files import write_parquet
from curation.selection.plans import EVERY_EPOCH


def write_part(sample_ids: np.ndarray, path: Path) -> tuple[str, str, int]:
    """Write one part; returns (name, md5, rows)."""
    n = len(sample_ids)
    write_parquet(
        pa.table(
            {
                "epoch": pa.array(np.full(n, EVERY_EPOCH, np.int32)),
                "sample_id": pa.array(sample_ids, pa.int64()),
                "weight": pa.array(np.ones(n, np.float32)),
            }
        ),
        path,
    )
    return path.name, file_md5(path), n
