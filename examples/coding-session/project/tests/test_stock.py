"""Tests of inventory.stock: receiving, picking and counting units."""

from __future__ import annotations

import unittest

from inventory import InsufficientStock, Inventory


class ReceivingTests(unittest.TestCase):
    def test_new_inventory_is_empty(self) -> None:
        inventory = Inventory()
        self.assertEqual(len(inventory), 0)
        self.assertEqual(inventory.total_units(), 0)

    def test_add_accumulates_units(self) -> None:
        inventory = Inventory()
        inventory.add("bolt-m6", 10)
        self.assertEqual(inventory.add("bolt-m6", 5), 15)
        self.assertEqual(inventory.on_hand("bolt-m6"), 15)

    def test_skus_are_case_insensitive(self) -> None:
        inventory = Inventory({"nut-m6": 4})
        self.assertIn("NUT-M6", inventory)
        self.assertEqual(inventory.on_hand(" Nut-M6 "), 4)
        self.assertEqual(inventory.skus(), ["NUT-M6"])

    def test_quantity_must_be_a_positive_int(self) -> None:
        inventory = Inventory()
        with self.assertRaises(ValueError):
            inventory.add("bolt-m6", 0)
        with self.assertRaises(TypeError):
            inventory.add("bolt-m6", 2.5)  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            inventory.add("  ", 1)


class PickingTests(unittest.TestCase):
    def test_remove_takes_units_away(self) -> None:
        inventory = Inventory({"washer": 8})
        self.assertEqual(inventory.remove("washer", 3), 5)

    def test_remove_more_than_on_hand_is_refused(self) -> None:
        inventory = Inventory({"washer": 2})
        with self.assertRaises(InsufficientStock) as caught:
            inventory.remove("washer", 3)
        self.assertEqual(caught.exception.on_hand, 2)
        self.assertEqual(inventory.on_hand("washer"), 2)

    def test_unknown_sku_has_nothing_on_hand(self) -> None:
        self.assertEqual(Inventory().on_hand("gear"), 0)

    def test_iteration_is_sorted_by_sku(self) -> None:
        inventory = Inventory({"b": 1, "a": 2})
        self.assertEqual(list(inventory), [("A", 2), ("B", 1)])


if __name__ == "__main__":
    unittest.main()
