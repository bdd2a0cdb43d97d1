"""A test dependency that only the project's own environment has (through a .pth file)."""


def double(x: int) -> int:
    return 2 * x
