"""Benchmarks of portable-loader: ``python -m bench`` (see docs/benchmarks.md)."""
