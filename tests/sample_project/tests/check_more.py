"""More sample tests, in a second module."""

from calc import add


def test_add_zero() -> None:
    assert add(7, 0) == 7
