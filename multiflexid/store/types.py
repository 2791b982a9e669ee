"""Column types shared by the ORM models."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Dialect,
    Integer,
    String,
    any_,
    bindparam,
    func,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeDecorator

from multiflexi.states import HELD_STATES


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware and stored in UTC.

    Naive datetimes are refused on the way in: an ambiguous time in the job history is a
    bug we want to see at once, not a wrong schedule months later.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a time zone")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite has no time zone type; store naive UTC so text comparisons order.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def held_state(column: Any) -> Any:
    """``column IN ('claimed', 'running')`` with the states written in the statement, not
    bound: only then can SQLite and PostgreSQL use the partial index of held jobs (one per
    template) — with bound values SQLite reads every job of the template instead."""
    return column.in_([literal_column(f"'{state}'") for state in HELD_STATES])


def in_ids(column: Any, name: str, postgresql: bool) -> Any:
    """``column IN (<the ids in parameter name>)`` as one parameter (give it
    :func:`ids_param`): an array on PostgreSQL, a JSON list on SQLite. The statement's
    text is the same whatever the number of ids: not rendered again for every list
    (as an expanding IN is), and prepared once by the server."""
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(Integer)))
    return column.in_(select(literal_column("value")).select_from(
        func.json_each(bindparam(name, type_=String))))


def ids_param(ids: Iterable[int], postgresql: bool) -> list[int] | str:
    return list(ids) if postgresql else json.dumps(list(ids))
