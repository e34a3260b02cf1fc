"""Checks of the project as a whole: style, types, layers, the wheel, the docs, the benchmarks."""
