"""Alembic environment: migrates the connection the store hands over, or one made from the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from orchestration.store.db import create_store_engine
from orchestration.store.schema import metadata

target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    # When the store passes a connection already inside its transaction, Alembic joins it.
    with context.begin_transaction():
        context.run_migrations()


def run_migrations() -> None:
    """Migrate `config.attributes["connection"]` if given, else the `sqlalchemy.url` option."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_store_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; pass a database URL")
run_migrations()
