"""Doubles twice, with the help of its dependency."""

from tinydep import double


def quadruple(x: int) -> int:
    return double(double(x))
