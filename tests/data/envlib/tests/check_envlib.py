import tinydep

from envlib import quadruple


def test_dependency_doubles() -> None:
    assert tinydep.double(3) == 6


def test_quadruple() -> None:
    assert quadruple(3) == 12
