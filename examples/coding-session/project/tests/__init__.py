"""Tests of the inventory package (standard library unittest only)."""
