"""Regenerate docs/benchmarks.md from benchmarks/results/*.json: `python -m benchmarks.report`."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks._common import RESULTS

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def section(result: dict, stem: str) -> str:
    """One result file's section, headed by the file's name (a benchmark may have several)."""
    name = result["benchmark"]
    rows = result["results"]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    m = result["machine"]
    lines = [
        f"## {stem}",
        "",
        f"`python -m benchmarks.{name}` (or `make bench NAME={name}`), git {result.get('git_rev')}, {result['date']}, "
        f"{m['cpus']} CPUs, {m['memory_gb']} GiB, GPU: {m['gpu'] or 'none'}, torch {m['torch']}.",
        "",
        f"Parameters: {', '.join(f'{k}={v}' for k, v in result['params'].items())}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(_cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    lines += ["", "| ratio | measured | target |", "|---|---|---|"]
    lines += [f"| {k} | {_cell(v)} | {result['targets'].get(k, '')} |" for k, v in result["ratios"].items()]
    lines += ["", f"**Target met: {'yes' if result['met'] else 'no'}.** {result.get('notes', '')}", ""]
    return "\n".join(lines)


def main() -> None:
    unfinished = (".quick.json", ".so-far.json")  # smoke runs, and the seeds a run had finished when stopped
    results = {
        p.stem: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json")) if not p.name.endswith(unfinished)
    }
    header = (
        "# Benchmarks\n\nGenerated from `benchmarks/results/*.json` by `python -m benchmarks.report`; do not edit by "
        "hand. Each benchmark runs our method and its baseline side by side in one process; ratios are what to "
        "compare, absolute seconds are context from a shared, noisy 2-core machine.\n"
    )
    from benchmarks.gpu_check import PENDING

    pending = [] if (RESULTS / "gpu_check.json").exists() else [PENDING]  # its device command until it has run
    DOC.write_text(header + "\n" + "\n".join([*(section(r, stem) for stem, r in results.items()), *pending]))
    print(f"wrote {DOC} ({len(results)} benchmarks)")


if __name__ == "__main__":
    main()
