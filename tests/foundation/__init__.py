"""Tests for the foundation: dose units, drug library, ``pumpctl calc`` and ``library``."""
