"""Benchmarks, run from the repository root as modules (`python -m benchmarks.bench`): `make bench`
(bench.py, bench_analysis.py), its tutorial-style baseline, the GPU check and the driver-memory
measurement."""
