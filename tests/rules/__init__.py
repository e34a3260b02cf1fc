"""Tests of loader/rules/."""
