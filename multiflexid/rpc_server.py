"""The daemon's Unix socket: JSON-RPC 2.0, one message per line (see shared/PROTOCOL.md).

The peer is identified by SO_PEERCRED (and its groups by SO_PEERGROUPS), never by what
it sends. Root, the daemon's own user and members of group ``multiflexi`` are admins of
everything; a user whose groups have roles (access.py) is served within them; anyone else
gets a ``forbidden`` error (id null) and the connection is closed. Each connection's roles
are looked up again every PERMISSIONS_TTL seconds, whether it calls or only listens (a
grant revoked, a user taken out of a group), and pushed events carry only the companies
it may see now; a connection left with no role at all is told so and closed. A malformed
or oversized frame gets an error and closes that connection only.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiflexi.errors import Forbidden, MethodNotFound, MultiFlexiError, ProtocolError
from multiflexi.protocol import (
    Params,
    encode,
    error_response,
    notification,
    parse_frame,
    response,
)
from multiflexid.access import Permissions, listed_groups, peer_groups, refusal
from multiflexid.health import Health
from multiflexid.status import signature
from multiflexid.store.audit import Actor

log = logging.getLogger(__name__)

GROUP = "multiflexi"
QUEUE_LIMIT = 10000  # notifications waiting for a slow client before it is dropped


@dataclass
class Peer:
    pid: int
    uid: int
    gid: int
    user: str
    groups: list[str] = field(default_factory=list)
    login_user: str | None = None  # who logged in, when not ``user`` (sudo: loginuid)
    # Of ``groups``, those the group database listed the user in at connect time: one it
    # no longer lists (the user was taken out of it) stops counting. The others (a
    # service's SupplementaryGroups=, newgrp) are the process's for as long as it runs.
    listed: frozenset[str] = frozenset()

    @classmethod
    def of(cls, sock: socket.socket) -> Peer:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
        user = _user_name(uid)
        login = None
        with contextlib.suppress(OSError, ValueError):
            login_uid = int(Path(f"/proc/{pid}/loginuid").read_text().strip())
            if login_uid not in (uid, 4294967295):
                login = _user_name(login_uid)
        groups = peer_groups(sock, user, gid)
        return cls(pid, uid, gid, user, groups, login,
                   frozenset(listed_groups(user, gid) & set(groups)))

    def regroup(self, listed_now: set[str]) -> bool:
        """Drop the groups the user was taken out of since (``listed_now``: what the group
        database lists now, ``listed_groups``); whether any was."""
        gone = self.listed - listed_now
        if not gone:
            return False
        self.groups = [g for g in self.groups if g not in gone]
        self.listed = self.listed - gone
        return True

    @property
    def actor(self) -> Actor:
        return Actor(self.user, "socket", self.login_user)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


Authorize = Callable[[Peer], Awaitable[Permissions]]
# Roles are looked up again this often (grants and groups change while clients stay).
PERMISSIONS_TTL = 2.0


@dataclass(eq=False)  # identity: each connection is its own
class Connection:
    peer: Peer
    writer: asyncio.StreamWriter
    perms: Permissions = field(default_factory=lambda: Permissions(""))
    perms_at: float = 0.0
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue())
    jobs: bool = False
    runtemplates: bool = False
    status: bool = False  # daemon.status pushed when it changes
    status_seen: tuple[Any, ...] | None = None  # what it was last told of (a signature)
    output_of: dict[int, int] = field(default_factory=dict)  # job id -> its company's
    closed: bool = False

    def send(self, message: dict[str, Any]) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= QUEUE_LIMIT:
            log.warning("client %s (pid %d) too slow; disconnected", self.peer.user,
                        self.peer.pid)
            self.close()
            return
        self.queue.put_nowait(encode(message))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    def wants(self, kind: str, payload: dict[str, Any]) -> bool:
        """Subscribed to it, and allowed to see its company."""
        if kind == "job.output":  # subscribed to one job, still allowed to see its company
            company_id = self.output_of.get(payload.get("job_id"))  # type: ignore[arg-type]
            return company_id is not None and self.perms.may("viewer", company_id)
        if kind == "job.changed":
            job = payload.get("job", {})
            return ((self.jobs or job.get("id") in self.output_of)
                    and self.perms.may("viewer", job.get("company_id")))
        if kind == "runtemplate.changed":
            return self.runtemplates and self.perms.may(
                "viewer", payload.get("runtemplate", {}).get("company_id"))
        if kind == "daemon.status":
            return self.status
        return False

    def shaped(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The notification's params for this peer: a pushed status says who it is and
        its roles, as daemon.status does."""
        if kind == "daemon.status":
            return {**payload, "user": self.peer.user, "access": self.perms.view()}
        return payload

    def subscriptions(self) -> list[str]:
        names = [k for k, v in (("jobs", self.jobs), ("runtemplates", self.runtemplates),
                                ("status", self.status)) if v]
        return names + [f"job_output:{j}" for j in sorted(self.output_of)]


Handler = Callable[[Connection, Params], Awaitable[Any]]


class RpcServer:
    def __init__(
        self, path: Path, handlers: dict[str, Handler], *, authorize: Authorize,
        max_frame: int = 1024 * 1024, health: Health | None = None,
    ) -> None:
        self.authorize = authorize
        self.health = health or Health()
        self.path = path
        self.handlers = handlers
        self.max_frame = max_frame
        self.connections: set[Connection] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._remove_stale()
        self._server = await asyncio.start_unix_server(
            self._serve, path=str(self.path), limit=self.max_frame + 1
        )
        os.chmod(self.path, 0o660)
        with contextlib.suppress(KeyError, PermissionError):
            os.chown(self.path, -1, grp.getgrnam(GROUP).gr_gid)
        log.info("listening on %s", self.path)

    async def _remove_stale(self) -> None:
        if not self.path.exists():
            return
        try:
            _r, w = await asyncio.open_unix_connection(str(self.path))
        except OSError:
            self.path.unlink()  # nobody answers: a leftover of a crashed daemon
            return
        w.close()
        raise MultiFlexiError(f"another multiflexid is already listening on {self.path}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def interested(self, kind: str | None = None) -> bool:
        """Whether any client subscribed to events of ``kind`` (None: to anything)."""
        if kind == "runtemplate.changed":
            return any(c.runtemplates for c in self.connections)
        if kind == "daemon.status":
            return any(c.status for c in self.connections)
        return any(c.jobs or c.runtemplates or c.output_of or c.status
                   for c in self.connections)

    def broadcast(self, kind: str, payload: dict[str, Any]) -> None:
        seen = signature(payload) if kind == "daemon.status" else None
        for conn in list(self.connections):
            if not conn.wants(kind, payload):
                continue
            if seen is not None:  # a status only when it says something new to this peer
                if seen == conn.status_seen:
                    continue
                conn.status_seen = seen
            conn.send(notification(kind, conn.shaped(kind, payload)))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer = Peer.of(sock)
        conn = Connection(peer, writer)
        sender = asyncio.create_task(self._send_loop(conn))
        try:
            await self._authorize(conn)
            why = None if conn.perms.anything else refusal(peer.user, peer.uid)
        except Exception as exc:  # the grants cannot be read: say so, serve nothing
            problem = self.health.internal_error("access", exc).message
            why = f"cannot check the access of {peer.user}: {problem}"
        if why:
            log.warning("refused %s (uid %d, pid %d): %s", peer.user, peer.uid, peer.pid, why)
            conn.send(error_response(None, Forbidden(why)))
            conn.close()
            await sender
            return
        self.connections.add(conn)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not conn.closed:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    conn.send(error_response(None, ProtocolError(
                        f"frame larger than {self.max_frame} bytes; connection closed")))
                    break
                except ConnectionError:
                    break
                if not line.strip():
                    continue  # a blank line (someone typing into socat): ignored
                try:
                    message = parse_frame(line)
                except ProtocolError as exc:
                    conn.send(error_response(exc.request_id, exc))
                    break
                task = asyncio.create_task(self._dispatch(conn, message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            self.connections.discard(conn)
            for task in tasks:
                task.cancel()
            conn.close()
            await sender

    async def _dispatch(self, conn: Connection, message: dict[str, Any]) -> None:
        msg_id = message.get("id")
        method = message.get("method")
        if method is None:  # a response from a client: nothing asked for it
            return
        handler = self.handlers.get(str(method))
        try:
            if handler is None:
                raise MethodNotFound(f"unknown method {method!r}", {"method": method})
            if asyncio.get_running_loop().time() - conn.perms_at > PERMISSIONS_TTL:
                await self._authorize(conn)
            result = await handler(conn, Params(message.get("params")))
        except MultiFlexiError as exc:
            if msg_id is not None:
                conn.send(error_response(msg_id, exc))
            return
        except Exception as exc:  # a bug, or the database is out: never its SQL on the wire
            error = self.health.internal_error(str(method), exc)
            if msg_id is not None:
                conn.send(error_response(msg_id, error))
            return
        if msg_id is not None:
            conn.send(response(msg_id, result))

    async def _authorize(self, conn: Connection) -> None:
        conn.perms = await self.authorize(conn.peer)
        conn.perms_at = asyncio.get_running_loop().time()

    async def keep_permissions(self, stop: asyncio.Event) -> None:
        """Every PERMISSIONS_TTL seconds, the roles of every connection looked up again —
        of those that only listen too — so that a revoked grant or a group the user was
        taken out of stops the events of that company within seconds."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PERMISSIONS_TTL)
            try:
                await self.refresh_permissions()
            except Exception as exc:  # the grants cannot be read: the old roles stay
                self.health.failed("access", exc)
            else:
                self.health.ok("access")

    async def refresh_permissions(self) -> None:
        conns = [c for c in self.connections if not c.closed]
        if not conns:
            return
        # the group database, once per user, off the loop (NSS may ask a server)
        listed = await asyncio.to_thread(lambda: {
            key: listed_groups(*key) for key in {(c.peer.user, c.peer.gid) for c in conns}})
        regrouped = {c for c in conns if c.peer.regroup(listed[c.peer.user, c.peer.gid])}
        for conn in conns:
            before = conn.perms
            await self._authorize(conn)
            if conn.perms.view() == before.view() and conn not in regrouped:
                continue
            peer = conn.peer
            log.info("roles of %s (pid %d) changed: %s", peer.user, peer.pid,
                     _roles_text(conn.perms), extra={"MULTIFLEXI_USER": peer.user})
            if not conn.perms.anything:
                conn.send(error_response(None, Forbidden(refusal(peer.user, peer.uid))))
                conn.close()

    async def _send_loop(self, conn: Connection) -> None:
        writer = conn.writer
        try:
            while True:
                data = await conn.queue.get()
                if data is None:
                    break
                writer.write(data)
                if conn.queue.empty():
                    await writer.drain()
        except (ConnectionError, RuntimeError):
            pass
        finally:
            conn.closed = True
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _roles_text(perms: Permissions) -> str:
    parts = ([f"{perms.everywhere} of every company"] if perms.everywhere else []) + [
        f"{role} of company {perms.slugs.get(cid, cid)}"
        for cid, role in sorted(perms.companies.items())]
    return ", ".join(parts) or "none"
