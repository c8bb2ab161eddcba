"""Benchmarks for pgjobs."""
