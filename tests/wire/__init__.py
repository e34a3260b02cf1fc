"""Tests of loader/wire/."""
