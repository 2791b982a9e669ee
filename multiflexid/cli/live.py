"""What multiflexi-cli does through the running daemon: run and wait, follow, cancel."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import click

from multiflexi.client import Client
from multiflexi.errors import DaemonUnavailable
from multiflexi.states import FINAL_STATES

from .base import state
from .tail import Chunk, last_lines

FINAL = FINAL_STATES


def connect(required: str | None = None) -> Client | None:
    """A client of the daemon, or None when it is certainly not running.

    ``required`` names what needs the daemon: then "not running" is an error too.
    Anything else (permission denied, a broken socket) is always an error.
    """
    path = state().core.settings.socket
    try:
        return Client(path, timeout=30)
    except DaemonUnavailable as exc:
        if exc.data.get("running") is False and required is None:
            return None
        if required is not None:
            raise DaemonUnavailable(f"{required} needs the daemon: {exc.message}",
                                    exc.data) from None
        raise


def current_user() -> str:
    """Who runs this command (recorded as a job's ``launched_by`` without the daemon)."""
    import getpass
    import os

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def exit_status(job: dict[str, Any]) -> int:
    """The exit code `--wait` ends with: 124 timed out and 130 cancelled (as timeout(1) and
    Ctrl-C), else the job's own, else 1 (blocked, lost, did not start)."""
    if job["state"] in ("timed_out", "cancelled"):
        return 124 if job["state"] == "timed_out" else 130
    if job.get("exitcode") is not None:
        return int(job["exitcode"])
    return 0 if job["state"] == "succeeded" else 1


def _write(chunk: dict[str, Any], stream: str | None) -> None:
    kind = chunk["stream"]
    if stream is not None and kind not in (stream, "system"):
        return
    out = sys.stderr if kind in ("stderr", "system") else sys.stdout
    out.write(chunk["data"])
    out.flush()


def follow(client: Client, job_id: int, stream: str | None = None,
           tail: int | None = None) -> dict[str, Any]:
    """Print a job's output from the start (``tail``: its last lines only) and live until
    it ends; its final state."""
    client.call("events.subscribe", job_output=job_id)
    last = -1
    if tail is not None:  # the end of the history, read backwards
        for seq, kind, data in last_lines(_pages_back(client, job_id, stream), tail):
            _write({"stream": kind, "data": data.decode("utf-8", "replace")}, stream)
            last = seq
    while True:  # history first (the daemon flushes what it holds before answering)
        page = client.call("job.output", id=job_id, after_seq=last)
        for chunk in page["chunks"]:
            _write(chunk, stream)
        last = page["last_seq"]
        if not page["chunks"] or page["done"]:
            break
    job = client.call("job.get", id=job_id)
    if job["state"] in FINAL:
        return job
    for method, params in client.notifications():
        if method == "job.output" and params.get("job_id") == job_id:
            if params["seq"] > last:
                _write(params, stream)
                last = params["seq"]
        elif method == "job.changed" and params["job"]["id"] == job_id:
            if params["job"]["state"] in FINAL:
                return client.call("job.get", id=job_id)
    raise DaemonUnavailable("connection to multiflexid lost while following the job")


def _pages_back(client: Client, job_id: int, stream: str | None) -> Iterator[list[Chunk]]:
    """The job's output from the end backwards, a page at a time (oldest first in each)."""
    page = client.call("job.output", id=job_id, tail=True, stream=stream)
    while page["chunks"]:
        yield [(c["seq"], c["stream"], c["data"].encode()) for c in page["chunks"]]
        if not page.get("more_before"):
            return
        page = client.call("job.output", id=job_id, before_seq=page["first_seq"],
                           stream=stream)


def report_end(job: dict[str, Any]) -> None:
    """One line on stderr saying how the job ended (stdout stays the job's own output)."""
    text = f"job {job['id']} {job['state']}"
    if job.get("exitcode") is not None:
        text += f", exit code {job['exitcode']}"
        meaning = job.get("exit_meaning")
        if meaning:
            text += f" ({meaning['severity']}: {meaning['description']})"
    if job.get("reason"):
        text += f": {job['reason']}"
    click.echo(text, err=True)
