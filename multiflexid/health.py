"""What is wrong right now, and unexpected errors told once with their traceback.

Long-running loops (the scheduler, the dispatcher, the output writer, the status loop)
report a failure with :meth:`Health.failed` and their recovery with :meth:`Health.ok`;
the daemon is ``degraded``, with the reasons, while anything failed. An unexpected error
is logged with its traceback the first time it is seen and as one line after that, under
an *error id* derived from where it happened (the same bug has the same id in every line,
so ``journalctl MULTIFLEXI_ERROR_ID=<id>`` finds its traceback); the id, never the
exception's text (SQL, bound parameters), is what a socket client is told.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from dataclasses import dataclass, field

from sqlalchemy.exc import DBAPIError, OperationalError, StatementError

from multiflexi.errors import InternalError, StorageError

log = logging.getLogger("multiflexid")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# SQLite says "OperationalError" for a missing table too: these are the outages.
_SQLITE_OUTAGES = ("locked", "busy", "unable to open", "disk", "readonly", "full")


def database_unavailable(exc: BaseException) -> StorageError | None:
    """The database could not be reached or used (connection refused, locked, disk full):
    a one-line :class:`StorageError` without the statement or its parameters; None for
    anything else (a missing table or a bad statement is a bug, not an outage)."""
    if isinstance(exc, StorageError):  # already said in one line (store/db.py)
        return exc
    if not isinstance(exc, DBAPIError):
        return None
    orig = exc.orig if exc.orig is not None else exc
    text = _first_line(str(orig))
    outage = exc.connection_invalidated
    if isinstance(exc, OperationalError):
        sqlite = type(orig).__module__.startswith("sqlite3")
        outage = outage or not sqlite or any(word in text.lower() for word in _SQLITE_OUTAGES)
    return StorageError(f"the database is unavailable: {text}") if outage else None


def describe(exc: BaseException) -> str:
    """One line about ``exc`` that never carries a statement's SQL or parameters."""
    unavailable = database_unavailable(exc)
    if unavailable is not None:
        return unavailable.message
    if isinstance(exc, StatementError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {_first_line(str(exc.orig))}"
    return f"{type(exc).__name__}: {_first_line(str(exc))}" if str(exc) else type(exc).__name__


def error_id(where: str, exc: BaseException) -> str:
    """The same for the same error at the same place (type and traceback's frames)."""
    frames = traceback.extract_tb(exc.__traceback__)
    signature = "|".join([where, type(exc).__qualname__,
                          *(f"{f.filename}:{f.lineno}" for f in frames)])
    return hashlib.sha256(signature.encode()).hexdigest()[:10]


@dataclass
class Health:
    problems: dict[str, str] = field(default_factory=dict)  # component -> reason
    _seen: dict[str, int] = field(default_factory=dict)  # error id -> times

    @property
    def degraded(self) -> bool:
        return bool(self.problems)

    def summary(self) -> str:
        """``scheduler, dispatcher: <reason>; ...`` — one reason once, with everything it
        stops."""
        by_reason: dict[str, list[str]] = {}
        for component, reason in self.problems.items():
            by_reason.setdefault(reason, []).append(component)
        return "; ".join(f"{', '.join(components)}: {reason}"
                         for reason, components in by_reason.items())

    def report(self, where: str, exc: BaseException) -> str:
        """Log an unexpected error (traceback once per distinct error); its id."""
        eid = error_id(where, exc)
        times = self._seen.get(eid, 0) + 1
        self._seen[eid] = times
        fields = {"MULTIFLEXI_ERROR_ID": eid}
        if times == 1:
            log.error("%s: %s (error id %s)", where, describe(exc), eid, exc_info=exc,
                      extra=fields)
        elif times in (2, 10, 100) or times % 1000 == 0:
            log.error("%s: %s (error id %s, seen %d times; its traceback is logged with "
                      "the first)", where, describe(exc), eid, times, extra=fields)
        return eid

    def failed(self, component: str, exc: BaseException) -> None:
        """A loop failed: the database is out (said in one line), or a bug (reported)."""
        unavailable = database_unavailable(exc)
        if unavailable is not None:
            if self.problems.get(component) != unavailable.message:
                log.error("%s: %s", component, unavailable.message)
            self.problems[component] = unavailable.message
            return
        eid = self.report(component, exc)
        self.problems[component] = f"{describe(exc)} (error id {eid})"

    def ok(self, component: str) -> None:
        if self.problems.pop(component, None) is not None:
            log.warning("%s: working again", component)

    def internal_error(self, method: str, exc: BaseException) -> InternalError | StorageError:
        """What a socket client is told about ``exc`` raised in ``method``."""
        unavailable = database_unavailable(exc)
        if unavailable is not None:
            return unavailable
        eid = self.report(f"method {method}", exc)
        return InternalError(
            f"internal error in {method} (error id {eid}; its traceback is in the daemon's "
            f"journal: journalctl MULTIFLEXI_ERROR_ID={eid})", {"error_id": eid})
