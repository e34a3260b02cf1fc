"""Tests of loader/install/."""
