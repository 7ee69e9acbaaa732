"""Side-by-side benchmarks: `python -m benchmarks.<name> [--quick]`; results in benchmarks/results/."""
