"""remotecalc's benchmark: `python benchmarks/run.py` from the repository's root (see run.py)."""
