"""Benchmarks: `make bench` (bench.py), its tutorial-style baseline, and the GPU check."""
