"""systemd integration: sd_notify, the watchdog interval, logging to the journal or stderr."""

from __future__ import annotations

import logging
import os
import socket
import sys
from typing import Any

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify datagrams (READY=1, STATUS=..., WATCHDOG=1, STOPPING=1).

    Without ``NOTIFY_SOCKET`` (not started by systemd) every call does nothing.
    """

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._sock: socket.socket | None = None
        self._address: str | bytes = ""
        if address:
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop on a receiver that does not read: a full queue
            # drops the message (the next STATUS/WATCHDOG follows soon anyway).
            self._sock.setblocking(False)
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_seconds: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except BlockingIOError:
            log.debug("sd_notify receiver busy; dropped %s", lines[0])
        except OSError as exc:
            log.debug("sd_notify failed: %s", exc)

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _StderrFormatter(logging.Formatter):
    """Plain lines with the job context when there is one."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        job = getattr(record, "MULTIFLEXI_JOB_ID", None)
        if job is not None:
            where = getattr(record, "MULTIFLEXI_COMPANY", "?")
            stream = getattr(record, "MULTIFLEXI_STREAM", None)
            record.message = f"job {job} [{where}]{' ' + stream if stream else ''}: " \
                             f"{record.message}"
        return super().formatMessage(record)


def setup_logging(target: str = "auto", level: int = logging.INFO) -> str:
    """Log to the journal under systemd (or when asked), to stderr otherwise.

    ``target``: ``auto`` (journal when systemd connected our stderr to it, i.e.
    ``JOURNAL_STREAM`` is set), ``journal`` or ``stderr``. Returns the target used.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(level)
    chosen = target
    if target == "auto":
        chosen = "journal" if os.environ.get("JOURNAL_STREAM") else "stderr"
    out: logging.Handler | None = None
    if chosen == "journal":
        try:
            from systemd.journal import JournalHandler

            out = JournalHandler(SYSLOG_IDENTIFIER="multiflexid")
        except ImportError:
            chosen = "stderr"
    if out is None:
        out = logging.StreamHandler(sys.stderr)
        out.setFormatter(_StderrFormatter("%(asctime)s %(levelname)s %(message)s"))
    root.addHandler(out)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return chosen


class OutputLines:
    """Where the lines jobs print go besides the database: straight to the journal (one
    datagram a line, with the job's fields) or to stderr — without the logging machinery,
    which costs more than capturing the output itself."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._send: Any = None
        if target == "journal":
            from systemd import journal

            self._send = journal.send

    def __call__(self, fields: dict[str, Any], stream: str, text: str) -> None:
        if self._send is not None:
            priority = "4" if stream == "stderr" else "6"  # warning / info
            for line in text.splitlines():
                self._send(line, PRIORITY=priority, SYSLOG_IDENTIFIER="multiflexid",
                           MULTIFLEXI_STREAM=stream, **fields)
            return
        prefix = (f"job {fields.get('MULTIFLEXI_JOB_ID')} [{fields.get('MULTIFLEXI_COMPANY')}]"
                  f" {stream}: ")
        sys.stderr.write("".join(prefix + line + "\n" for line in text.splitlines()))


def fields(**values: Any) -> dict[str, Any]:
    """Journal fields for ``extra=``; None values are left out."""
    return {k: v for k, v in values.items() if v is not None}
