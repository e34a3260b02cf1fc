"""Tests of loader/api/."""
