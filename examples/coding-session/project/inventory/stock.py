"""Stock counts per SKU, with receiving and picking that never go below zero."""

from __future__ import annotations

from collections.abc import Iterator


class InsufficientStock(ValueError):
    """Raised when more units are picked than are on hand."""

    def __init__(self, sku: str, requested: int, on_hand: int) -> None:
        super().__init__(f"cannot remove {requested} x {sku}: only {on_hand} on hand")
        self.sku = sku
        self.requested = requested
        self.on_hand = on_hand


def _check_sku(sku: str) -> str:
    cleaned = sku.strip().upper()
    if not cleaned:
        raise ValueError("a SKU must not be empty")
    return cleaned


def _check_quantity(quantity: int) -> int:
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise TypeError(f"a quantity must be an int, got {type(quantity).__name__}")
    if quantity <= 0:
        raise ValueError(f"a quantity must be positive, got {quantity}")
    return quantity


class Inventory:
    """Units on hand per SKU; SKUs are case-insensitive and stored upper-case."""

    def __init__(self, counts: dict[str, int] | None = None) -> None:
        self._counts: dict[str, int] = {}
        for sku, quantity in (counts or {}).items():
            self.add(sku, quantity)

    def add(self, sku: str, quantity: int) -> int:
        """Receive units of a SKU; returns the new count on hand."""
        key = _check_sku(sku)
        self._counts[key] = self._counts.get(key, 0) + _check_quantity(quantity)
        return self._counts[key]

    def remove(self, sku: str, quantity: int) -> int:
        """Pick units of a SKU; returns the new count on hand."""
        key = _check_sku(sku)
        wanted = _check_quantity(quantity)
        on_hand = self._counts.get(key, 0)
        if wanted > on_hand:
            raise InsufficientStock(key, wanted, on_hand)
        self._counts[key] = on_hand - wanted
        return self._counts[key]

    def on_hand(self, sku: str) -> int:
        """Units of a SKU on hand; 0 for a SKU never received."""
        return self._counts.get(_check_sku(sku), 0)

    def skus(self) -> list[str]:
        """Every SKU ever received, sorted."""
        return sorted(self._counts)

    def total_units(self) -> int:
        return sum(self._counts.values())

    def __contains__(self, sku: object) -> bool:
        return isinstance(sku, str) and _check_sku(sku) in self._counts

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(sorted(self._counts.items()))

    def __len__(self) -> int:
        return len(self._counts)
