"""Tests of loader/dataplane/."""
