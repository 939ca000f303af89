"""Benchmarks: latency and memory measured in fresh processes, quality on the test split, reports."""
