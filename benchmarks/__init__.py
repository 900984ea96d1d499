"""Benchmarks: each prints JSON lines and appends to benchmarks/RESULTS.md."""
