"""The state store: runs, tasks and their history in SQLite or PostgreSQL.

Imports core only.
"""

from __future__ import annotations

from orchestration.store.db import masked_url, resolve_db_url
from orchestration.store.store import Batch, BreakerUpdate, Store, StoreConflict

__all__ = ["Batch", "BreakerUpdate", "Store", "StoreConflict", "masked_url", "resolve_db_url"]
