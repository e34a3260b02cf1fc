"""Tests of loader/app/."""
