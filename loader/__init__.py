"""portable-loader: runs eKuiper-compatible portable plugins as supervised processes."""

__version__ = "0.1.0"
