"""Reproductions and benchmarks: each a function that runs an experiment and reports figures."""
