"""Tests of sdk/, the plugin side."""
