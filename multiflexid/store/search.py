"""Text search in job output, indexed by trigrams on both databases.

What a match is: store/textmatch.py (the same on both). How each database finds it fast,
with an index filled in the background so no job waits for it: store/search_sqlite.py
(FTS5 ``trigram``), store/search_pg.py (``pg_trgm`` GIN). This module picks the one of a
database and owns the schema the migration 0009 creates.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from . import search_pg, search_sqlite
from .search_pg import PgOutputSearch
from .search_sqlite import SqliteOutputSearch
from .textmatch import MAX_LENGTH, MIN_LENGTH, Order, problem

__all__ = ["MAX_LENGTH", "MIN_LENGTH", "Order", "OutputSearch", "create_schema",
           "ensure_index", "not_modelled", "problem"]

# What the ORM does not describe (a virtual table and its shadow tables, the indexer's mark
# and queue, the copy of the output's text with its index that exists only where pg_trgm
# does): autogenerate leaves them alone.
NOT_MODELLED_PREFIXES = (search_sqlite.TABLE, search_pg.TABLE, search_pg.PENDING)

register_sqlite_functions = search_sqlite.register_functions


def OutputSearch(dialect: str) -> SqliteOutputSearch | PgOutputSearch:
    """The text search of a database (``sqlite`` or ``postgresql``)."""
    return SqliteOutputSearch() if dialect == "sqlite" else PgOutputSearch()


def create_schema(conn: Connection) -> str | None:
    """The migration's part: the index and what fills it; why the PostgreSQL index could
    not be made, or None."""
    if conn.dialect.name == "sqlite":
        search_sqlite.create(conn)
        return None
    return search_pg.create(conn)


def ensure_index(conn: Connection) -> tuple[bool, str | None]:
    """PostgreSQL: make the trigram index if it is missing (pg_trgm could not be created
    when the schema was migrated); (made now, why it still cannot be)."""
    if conn.dialect.name == "sqlite" or search_pg.has_index(conn):
        return False, None
    problem_ = search_pg.ensure_index(conn)
    return problem_ is None, problem_


def not_modelled(name: Any) -> bool:
    """For autogenerate: the search objects the ORM leaves to the migration."""
    return bool(name) and str(name).startswith(NOT_MODELLED_PREFIXES)
