"""Runnable example plans shipped with orchestration."""
