"""Nodes: each multiflexid holds a lease it renews by heartbeat (PostgreSQL, several hosts).

A node whose lease expired has its running jobs marked ``lost`` by a surviving node (with
the reason) and its claimed ones put back in the queue (it never started them: a start
is on record before a launch); a node that cannot renew its own lease stops launching
jobs (self-fencing), so a job never runs twice without anyone knowing.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from multiflexid.store.orm import Job, Node
from multiflexid.store.transitions import Batch, JobTransitions

HOST = socket.gethostname()


class NodeConflict(Exception):
    """Another live daemon uses this node name."""


def _alive_here(pid: int | None) -> bool:
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a live pid that is not a multiflexid (pid reuse) does not count
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"multiflexid" in cmdline


def register(
    s: Session, name: str, *, pid: int, version: str, now: datetime, lease: float
) -> None:
    """Claim the node name for this process (refused while another live daemon holds it)."""
    row = s.scalar(select(Node).where(Node.name == name).with_for_update())
    until = now + timedelta(seconds=lease)
    if row is None:
        s.add(Node(name=name, host=HOST, pid=pid, version=version, started_at=now,
                   heartbeat_at=now, lease_until=until, state="up"))
        return
    if row.state == "up" and row.pid != pid:
        same_host = row.host in (None, HOST)
        if (same_host and _alive_here(row.pid)) or (not same_host and row.lease_until > now):
            raise NodeConflict(
                f"node name {name!r} is held by a running multiflexid (pid {row.pid} on "
                f"{row.host}, lease until {row.lease_until.isoformat()}); give every daemon "
                "its own MULTIFLEXI_NODE"
            )
    row.host, row.pid, row.version = HOST, pid, version
    row.started_at, row.heartbeat_at, row.lease_until, row.state = now, now, until, "up"


def heartbeat(s: Session, name: str, *, pid: int, now: datetime, lease: float) -> bool:
    """Renew the lease; False when this node was declared dead meanwhile (reaped)."""
    row = s.scalar(select(Node).where(Node.name == name).with_for_update())
    if row is None or row.pid != pid or row.state != "up":
        return False
    row.heartbeat_at = now
    row.lease_until = now + timedelta(seconds=lease)
    return True


@dataclass
class Reaped:
    node: str
    last_heartbeat: datetime
    jobs: list[int]  # running: lost
    requeued: list[int] = field(default_factory=list)  # claimed, never started: queued again
    # Jobs it held that changed meanwhile (ended, or released): left alone, with their state.
    skipped: dict[int, str | None] = field(default_factory=dict)


def reap(s: Session, tx: JobTransitions, me: str, now: datetime, grace: float = 0.0
         ) -> list[Reaped]:
    """Nodes whose lease ran out (more than ``grace`` s ago): their running jobs are lost,
    their claimed ones go back to the queue."""
    cutoff = now - timedelta(seconds=grace)
    dead = list(s.scalars(
        select(Node).where(Node.name != me, Node.state == "up", Node.lease_until < cutoff)
        .with_for_update(skip_locked=True)
    ))
    out = []
    for node in dead:
        lost, requeued = tx.abandon(
            s, node.name, now,
            f"node {node.name} stopped renewing its lease (last heartbeat "
            f"{node.heartbeat_at.isoformat()}); marked lost by {me}, the job's result is "
            "unknown")
        node.state = "down"
        out.append(Reaped(node.name, node.heartbeat_at, [e.job_id for e in lost.done],
                          requeued.done, {**lost.skipped, **requeued.skipped}))
    return out


def release_stale_claims(s: Session, tx: JobTransitions, now: datetime, hold: float
                         ) -> Batch[int]:
    """Jobs claimed more than ``hold`` s ago and still not started, by any node, go back
    to the queue (their node's start is then refused: nothing is launched twice). Those
    their node started (or someone cancelled) meanwhile are the result's ``skipped``."""
    stale = list(s.scalars(select(Job.id).where(
        Job.state == "claimed", Job.claimed_at < now - timedelta(seconds=hold))))
    return tx.release(s, stale, now)


def unregister(s: Session, name: str, pid: int, now: datetime) -> None:
    s.execute(update(Node).where(Node.name == name, Node.pid == pid)
              .values(state="down", heartbeat_at=now, lease_until=now))


def nodes(s: Session) -> list[Node]:
    return list(s.scalars(select(Node).order_by(Node.name)))
