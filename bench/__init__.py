"""Benchmarks a user can run: `python -m bench.lifecycle`, `python -m bench.throughput`."""
