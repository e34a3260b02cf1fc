"""Tests of loader/plugins/."""
