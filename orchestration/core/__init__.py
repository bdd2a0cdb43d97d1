"""The vocabulary every layer shares: models, lifecycle, errors, durations and small utilities.

Imports nothing else of orchestration.
"""
