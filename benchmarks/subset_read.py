"""Reading a random 10% subset by sample id from a 1M-row version vs numpy fancy indexing in memory."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks._common import median_seconds, parser, peak_rss_mb, write_result


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--fraction", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    rows = 100_000 if args.quick else args.rows

    from benchmarks.ingest import make_rows
    from curation.data.contract import build_table
    from curation.data.store import VersionReader, features_numpy, stage

    features, labels, _ = make_rows(rows)
    rng = np.random.default_rng(1)
    wanted = rng.choice(rows, size=int(rows * args.fraction), replace=False)  # random order
    with tempfile.TemporaryDirectory() as tmp:
        table = build_table(features, labels, what="benchmark")
        staged = stage(table.schema, [table], Path(tmp))

        def read_subset():
            reader = VersionReader(staged.path)  # cold: open, read the id index, the row groups, take
            table = reader.take(wanted)
            return features_numpy(table), table.column("label").to_numpy()

        warm_reader = VersionReader(staged.path)
        warm_reader.sample_ids  # noqa: B018 - index loaded once

        def read_subset_warm():
            table = warm_reader.take(wanted)
            return features_numpy(table), table.column("label").to_numpy()

        def numpy_fancy():
            return features[wanted], labels[wanted]

        t_ours, (f_ours, l_ours) = median_seconds(read_subset, args.repeats)
        t_warm, _ = median_seconds(read_subset_warm, args.repeats)
        t_np, (f_np, l_np) = median_seconds(numpy_fancy, args.repeats)
        np.testing.assert_array_equal(f_ours, f_np)
        np.testing.assert_array_equal(l_ours, l_np)
        size_mb = sum(f.stat().st_size for f in warm_reader.files) / 2**20
    results = [
        {"system": "curation VersionReader.take (cold: open + index + read)", "seconds": round(t_ours, 4)},
        {"system": "curation VersionReader.take (warm: index cached)", "seconds": round(t_warm, 4)},
        {"system": "numpy fancy indexing, data already in memory", "seconds": round(t_np, 4)},
    ]
    for r in results:
        r["peak_rss_mb"] = peak_rss_mb()
    ratios = {"cold_vs_numpy": round(t_ours / t_np, 2), "warm_vs_numpy": round(t_warm / t_np, 2)}
    write_result(
        "subset_read",
        {
            "rows": rows,
            "fraction": args.fraction,
            "features": 40,
            "file_mb": round(size_mb, 1),
            "repeats": args.repeats,
        },
        results,
        ratios,
        {"report": "ratio (no target set by the issue)"},
        True,
        notes="the reader decompresses every touched row group (lz4); a random 10% subset touches all of "
        "them, so the ratio is the cost of reading from disk instead of holding the data in memory",
        out=args.out,
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
