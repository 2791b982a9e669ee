"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from multiflexi.errors import StorageError

from . import audit, search

MIGRATIONS = Path(__file__).with_name("migrations")
# Any number; used as a PostgreSQL advisory lock id so only one node migrates at a time.
_MIGRATION_LOCK = 0x4D464C58


@functools.cache
def _script_directory() -> ScriptDirectory:
    """The migration scripts, read once per process (reading them costs more than most
    CLI commands)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg)


class DatabaseError(StorageError):
    """The database cannot be used (unreachable, wrong URL, not migrated...)."""


def _sqlite_pragmas(busy_seconds: float, dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event decide how transactions start (see below).
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={round(busy_seconds * 1000)}")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()
    search.register_sqlite_functions(dbapi_connection)


def transaction_memo(s: Session, key: str) -> dict[Any, Any]:
    """A dict that lives as long as the session's current transaction: what one
    transaction looked up once (the daemon's writer commits many changes together; its
    session's identity map holds objects only while someone refers to them)."""
    current = s.get_transaction()
    memo = s.info.get(key)
    if memo is None or memo[0] is not current:
        memo = s.info[key] = (current, {})
    return memo[1]


class Database:
    """One database: a write engine, a read engine, sessions and migrations.

    On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` so two writers never
    deadlock upgrading a read lock; reads use a plain deferred ``BEGIN`` on their own engine
    so WAL lets them run beside a writer.
    """

    def __init__(self, url: str, *, echo: bool = False, sqlite_busy_seconds: float = 30.0
                 ) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise DatabaseError(f"not a database URL: {url!r}") from None
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise DatabaseError(
                f"unsupported database {self.dialect!r}: use sqlite:/// or postgresql+psycopg://"
            )
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                folder = Path(parsed.database).parent
                try:
                    folder.mkdir(parents=True, exist_ok=True, mode=0o750)
                except OSError as exc:
                    raise DatabaseError(
                        f"cannot create the database's directory {folder}: "
                        f"{exc.strerror or exc} (check data_dir / MULTIFLEXI_DATA_DIR)"
                    ) from None
            busy = sqlite_busy_seconds
            self.engine = self._sqlite_engine(url, "BEGIN IMMEDIATE", echo, busy)
            self.read_engine = self._sqlite_engine(url, "BEGIN", echo, busy)
        else:
            self.engine = create_engine(
                url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=10
            )
            self.read_engine = self.engine
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Who this process's write sessions act for in the audit trail (the CLI sets it;
        # the daemon sets one per socket call instead).
        self.actor: audit.Actor | None = None
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self._version_probe: sqlite3.Connection | None = None

    def data_version(self) -> int | None:
        """On SQLite, a number that changes whenever anyone commits to the database (this
        process's writer, the CLI, another program): ``PRAGMA data_version`` of a
        connection kept for asking only, a few microseconds, no thread needed. None when
        that cannot be told (PostgreSQL, an in-memory database, an error): read again.
        One caller thread only (the daemon's event loop)."""
        database = self.url.database if self.dialect == "sqlite" else None
        if not database or database == ":memory:":
            return None
        try:
            if self._version_probe is None:
                self._version_probe = sqlite3.connect(
                    database, timeout=0.05, isolation_level=None, check_same_thread=False)
            return int(self._version_probe.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error:
            if self._version_probe is not None:
                self._version_probe.close()
                self._version_probe = None
            return None

    @staticmethod
    def _sqlite_engine(url: str, begin: str, echo: bool, busy_seconds: float) -> Engine:
        # Enough pooled connections for the daemon's threads: a connection opened beyond
        # the pool is closed again after use, and reopening costs the PRAGMAs each time.
        pool: dict[str, Any] = {}
        if make_url(url).database not in (None, "", ":memory:"):  # a file: a queue pool
            pool = {"pool_size": 10, "max_overflow": 10}
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False},
                               **pool)
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, busy_seconds))

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(begin)

        return engine

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def display_url(self) -> str:
        """The URL without a password, for messages."""
        return self.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed on success, rolled back on any exception."""
        with self._sessions() as session, self._translate_errors():
            audit.set_actor(session, self.actor)
            with session.begin():
                yield session

    @contextlib.contextmanager
    def transaction(self, session: Session) -> Iterator[Session]:
        """A write transaction on a long-lived ``session`` (the daemon's writer thread
        reuses one: creating and closing a Session per transaction costs more than the
        statements of a job). Objects are detached afterwards so none piles up."""
        try:
            with self._translate_errors(), session.begin():
                yield session
        finally:
            session.expunge_all()

    def new_session(self) -> Session:
        return self._sessions()

    def writer_session(self) -> Session:
        """A long-lived session on a connection of its own (the daemon's writer): no pool
        check-out, reset (a ROLLBACK) and ping around every transaction. A connection
        the database dropped is invalidated and replaced on its next use."""
        return Session(bind=self.engine.connect(), expire_on_commit=False)

    @contextlib.contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read-only transaction; ended by closing the session (objects stay readable,
        detached, instead of being expired by a rollback)."""
        with self._read_sessions() as session, self._translate_errors():
            yield session

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise DatabaseError(
                f"database {self.display_url()}: {str(exc.orig).strip().splitlines()[0]}"
            ) from exc

    # --- migrations ---------------------------------------------------------------------

    def _alembic_config(self) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        url = self.url.render_as_string(hide_password=False)
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        return cfg

    @staticmethod
    def head_revision() -> str | None:
        """The newest migration this code knows."""
        return _script_directory().get_current_head()

    @staticmethod
    def known_revision(revision: str) -> bool:
        try:
            return _script_directory().get_revision(revision) is not None
        except Exception:  # alembic raises its own errors for unknown ids
            return False

    def current_revision(self) -> str | None:
        with self._translate_errors(), self.read_engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def is_up_to_date(self) -> bool:
        return self.current_revision() == self.head_revision()

    def upgrade(self, target: str = "head") -> tuple[str | None, str | None]:
        """Bring the schema to the newest revision (or ``target``); returns (before, after)."""
        cfg = self._alembic_config()
        with self._translate_errors(), self.engine.connect() as conn:
            if not self.is_sqlite:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()
            try:
                before = MigrationContext.configure(conn).get_current_revision()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
                conn.commit()
                after = MigrationContext.configure(conn).get_current_revision()
            except BaseException:
                conn.rollback()  # a failed migration leaves nothing half done
                raise
            finally:
                if not self.is_sqlite:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                    conn.commit()
        return before, after

    def ensure_search_index(self) -> tuple[bool, str | None]:
        """PostgreSQL: make the output's trigram index if it is missing (pg_trgm could not
        be created when the schema was migrated); (made now, why it still cannot be)."""
        if self.is_sqlite:
            return False, None
        with self._translate_errors(), self.engine.begin() as conn:
            return search.ensure_index(conn)

    def require_current(self, current: str | None = None) -> None:
        """Refuse to work on a schema that is not migrated (clear message, no crash later)."""
        current = current or self.current_revision()
        head = self.head_revision()
        if current == head:
            return
        if current is not None and not self.known_revision(current):
            raise DatabaseError(
                f"database {self.display_url()} is at schema revision {current}, which this "
                f"version of MultiFlexi does not know (it needs {head}): a newer MultiFlexi "
                "migrated it; upgrade this installation"
            )
        raise DatabaseError(
            f"database {self.display_url()} is at schema revision {current or 'none'}, "
            f"this version needs {head}: run `multiflexi-cli db upgrade`"
        )

    def dispose(self) -> None:
        if self._version_probe is not None:
            self._version_probe.close()
            self._version_probe = None
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
