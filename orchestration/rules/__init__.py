"""Rule expressions and rule files: the simpleeval sandbox, its functions, loading, testing.

Imports core only.
"""
