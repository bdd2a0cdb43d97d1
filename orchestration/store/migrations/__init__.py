"""Alembic migrations of the store's schema; `Store.open` applies them up to head."""
