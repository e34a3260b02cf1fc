"""Streams, rules and the data plane that moves records through plugin symbols."""
