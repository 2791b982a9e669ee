"""Alembic environment: runs on the connection handed over by ``Database.upgrade``."""

from __future__ import annotations

import warnings

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.exc import SAWarning

from multiflexid.store.orm import Base
from multiflexid.store.search import not_modelled

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # plain `alembic` command line (developers): own engine
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _migrate(conn)
        return
    _migrate(connection)


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=lambda name, _type, _parents: not not_modelled(name),
    )
    with context.begin_transaction(), warnings.catch_warnings():
        # SQLite's batch mode reflects the tables a changed one refers to; reflection
        # cannot read the lower(...) unique indexes of 0003 and says so (they are kept).
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression",
                                SAWarning)
        context.run_migrations()


run()
