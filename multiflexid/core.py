"""The pieces every entry point (CLI, daemon) needs: settings, database, secret box."""

from __future__ import annotations

import logging
from functools import cached_property

from multiflexi.errors import StorageError
from multiflexi.settings import Settings, load_settings
from multiflexid.crypto import SecretBox
from multiflexid.store.audit import Actor
from multiflexid.store.db import Database, DatabaseError
from multiflexid.store.deadlines import TickBook
from multiflexid.store.transitions import JobTransitions

log = logging.getLogger(__name__)


class Core:
    """Lazily opened resources of one process."""

    def __init__(self, settings: Settings | None = None, actor: Actor | None = None) -> None:
        """``actor``: who this process's write sessions act for in the audit trail."""
        self.settings = settings or load_settings()
        self.actor = actor

    @cached_property
    def db(self) -> Database:
        try:
            db = Database(self.settings.effective_database_url,
                          sqlite_busy_seconds=self.settings.sqlite_busy_seconds)
        except DatabaseError as exc:
            raise StorageError(str(exc)) from None
        db.actor = self.actor
        return db

    @cached_property
    def transitions(self) -> JobTransitions:
        """The store's job transitions, with what must happen in the transaction of every
        job's end (the same in the daemon and the CLI): the actions' outbox rows, and the
        settling of the job's tick (deadlines)."""
        from multiflexid.actions.ledger import ActionLedger

        return JobTransitions(on_end=[
            ActionLedger(max_attempts=lambda: self.settings.action_max_attempts),
            self.deadlines.jobs_ended])

    @cached_property
    def deadlines(self) -> TickBook:
        """The store's tick API. What must happen in the transaction of a tick's change
        (a missed deadline, a late success) subscribes here: ``deadlines.on_tick`` — the
        outbox rows of the ``missed`` and ``late`` actions (the same in the daemon and the
        CLI)."""
        from multiflexid.actions.ledger import TickActionLedger

        return TickBook(on_tick=[
            TickActionLedger(max_attempts=lambda: self.settings.action_max_attempts)])

    @cached_property
    def box(self) -> SecretBox:
        return SecretBox(self.settings.secret_key_path, self._encrypted_values)

    def _encrypted_values(self) -> int:
        from multiflexid.services import actions, credentials

        with self.db.read_session() as s:
            return credentials.count_encrypted(s) + actions.count_encrypted(s)

    def migrate(self) -> tuple[str | None, str | None]:
        try:
            return self.db.upgrade()
        except DatabaseError as exc:
            raise StorageError(str(exc)) from None

    def ensure_schema(self) -> None:
        """Migrate an empty database; refuse one at an unknown revision.

        A fresh SQLite file is created and migrated on first use, so `multiflexi-cli` works
        right after installation without a separate step.
        """
        try:
            current = self.db.current_revision()
            if current is None:
                self.db.upgrade()
                return
            self.db.require_current(current)
        except DatabaseError as exc:
            raise StorageError(str(exc)) from None

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
