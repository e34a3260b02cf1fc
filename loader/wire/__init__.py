"""Host side of the portable plugin wire protocol (see docs/protocol.md)."""
