"""A small stock-keeping package: counts of items on hand, by SKU."""

from __future__ import annotations

from inventory.stock import InsufficientStock, Inventory

__all__ = ["InsufficientStock", "Inventory"]
