"""The REST management API (eKuiper-compatible paths)."""
