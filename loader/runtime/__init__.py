"""Host-side adapters that make plugin symbols usable by rules (the data plane)."""
