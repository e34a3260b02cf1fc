"""Helpers for the sdk tests: a host stand-in and small plugin programs."""
