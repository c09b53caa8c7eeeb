"""Benchmarks: python -m bench.loaders."""
