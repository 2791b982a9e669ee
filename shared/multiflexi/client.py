"""Clients of the multiflexid socket: :class:`Client` (blocking, for the CLI) and
:class:`AsyncClient` (asyncio, for the TUI). See shared/PROTOCOL.md for the methods.

Both raise the error the daemon sent, rebuilt as its :mod:`multiflexi.errors` class
(``NotFound``, ``InvalidInput``...), and :class:`DaemonUnavailable` with a message an admin
can act on when the socket does not answer. A refusal the daemon sends before hanging up
(an error with id null, e.g. ``Forbidden``) is surfaced as such, not as a lost connection.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import itertools
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, Protocol, overload

from .errors import DaemonUnavailable, MultiFlexiError, ProtocolError
from .protocol import (
    DEFAULT_MAX_FRAME,
    encode,
    error_from_response,
    message_kind,
    parse_frame,
    request,
)

__all__ = ["AsyncClient", "Client", "DisconnectCallback", "NotificationCallback"]

log = logging.getLogger(__name__)

SOCKET_GROUP = "multiflexi"
_READ_SIZE = 65536
# How long a client keeps reading after a failed write, to find the daemon's reason.
_SALVAGE_SECONDS = 1.0

NotificationCallback = Callable[[str, dict[str, Any]], object]
DisconnectCallback = Callable[[MultiFlexiError], object]


class _Default:
    """Marks "use the client's timeout" (``None`` means "wait forever")."""


_DEFAULT = _Default()


# --- messages shared by both clients ---------------------------------------------------------


def _connect_error(path: Path, exc: OSError) -> DaemonUnavailable:
    # data["running"] is False when the daemon is certainly not running (so a caller may
    # fall back to working on the database), unknown (None) otherwise.
    data: dict[str, Any] = {"socket": str(path), "running": None}
    if isinstance(exc, FileNotFoundError):
        msg = f"multiflexid is not running (no socket at {path})"
        data["running"] = False
    elif isinstance(exc, ConnectionRefusedError):
        msg = f"multiflexid is not running (nothing accepts connections on {path})"
        data["running"] = False
    elif isinstance(exc, PermissionError):
        msg = f"permission denied on {path}: add your user to group {SOCKET_GROUP}"
    elif isinstance(exc, TimeoutError):
        msg = f"multiflexid does not accept connections on {path} (timed out)"
    elif exc.errno == errno.ENOTSOCK:
        msg = f"{path} is not a socket: is MULTIFLEXI_SOCKET right?"
    else:
        msg = f"cannot connect to multiflexid on {path}: {exc.strerror or exc}"
    return DaemonUnavailable(msg, data)


def _lost(path: Path) -> DaemonUnavailable:
    return DaemonUnavailable("connection to multiflexid lost", {"socket": str(path)})


def _no_answer(method: str, timeout: float | None) -> DaemonUnavailable:
    return DaemonUnavailable(
        f"multiflexid did not answer {method} within {timeout:g}s",
        {"method": method, "timeout": timeout},
    )


def _oversized(limit: int) -> ProtocolError:
    return ProtocolError(f"multiflexid sent a frame larger than {limit} bytes")


def _malformed(exc: ProtocolError) -> ProtocolError:
    return ProtocolError(f"multiflexid sent a malformed frame: {exc.message}")


def _again(err: MultiFlexiError) -> MultiFlexiError:
    """A fresh copy, so one error can be raised in several places."""
    return type(err)(err.message, dict(err.data))


class _Frames:
    """Splits received bytes into frames, enforcing the size limit."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()
        self._scan = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> dict[str, Any] | None:
        """The next complete message, or None when more bytes are needed."""
        while True:
            nl = self._buf.find(b"\n", self._scan)
            if nl < 0:
                self._scan = len(self._buf)
                if len(self._buf) > self.max_frame:
                    raise _oversized(self.max_frame)
                return None
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            self._scan = 0
            if nl > self.max_frame:
                raise _oversized(self.max_frame)
            if not line.strip():
                continue
            try:
                return parse_frame(line)
            except ProtocolError as exc:
                raise _malformed(exc) from None


def _hangup_error(msg: dict[str, Any]) -> MultiFlexiError | None:
    """The error of a response with id null: the daemon is refusing us and hangs up."""
    if message_kind(msg) == "response" and msg.get("id") is None and "error" in msg:
        return error_from_response(msg)
    return None


# --- blocking client -------------------------------------------------------------------------


class Client:
    """A blocking connection to multiflexid. Not thread-safe: one thread per client.

    ``timeout`` bounds the connect and each call (``None``: wait forever). Notifications
    (after ``events.subscribe``) that arrive while a call waits for its response are
    queued and yielded later by :meth:`notifications`.
    """

    def __init__(
        self, path: str | Path, timeout: float | None = 30.0, *,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._frames = _Frames(max_frame)
        self._ids = itertools.count(1)
        self._queued: deque[tuple[str, dict[str, Any]]] = deque()
        self._error: MultiFlexiError | None = None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise _connect_error(self.path, exc) from None
        self._sock: socket.socket | None = sock

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._error is None:
            self._error = DaemonUnavailable("the connection to multiflexid is closed")

    def call(self, method: str, /, **params: Any) -> Any:
        """Call ``method`` with ``params``; the result, or the daemon's error raised."""
        return self.call_with(method, params)

    def call_with(
        self, method: str, params: dict[str, Any] | None = None, *,
        timeout: float | _Default | None = _DEFAULT,
    ) -> Any:
        """:meth:`call` with params as a dict (for names like ``from``) and its own timeout."""
        limit = self.timeout if isinstance(timeout, _Default) else timeout
        deadline = None if limit is None else time.monotonic() + limit
        rid = next(self._ids)
        self._send(encode(request(rid, method, params)), deadline)
        while True:
            msg = self._receive(deadline)
            if msg is None:
                raise _no_answer(method, limit)
            kind = message_kind(msg)
            if kind == "notification":
                self._queued.append((msg["method"], msg.get("params") or {}))
            elif kind == "response" and msg.get("id") == rid:
                if "error" in msg:
                    raise error_from_response(msg)
                return msg.get("result")
            # else: the late answer of a call that timed out, or a request (never sent)

    def notifications(self, timeout: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(method, params)`` of notifications, queued ones first.

        Ends when none arrives for ``timeout`` seconds (``None``: never); raises
        :class:`DaemonUnavailable` when the connection drops. The client may be called
        between two notifications.
        """
        while True:
            while self._queued:
                yield self._queued.popleft()
            deadline = None if timeout is None else time.monotonic() + timeout
            msg = self._receive(deadline)
            if msg is None:
                return
            if message_kind(msg) == "notification":
                self._queued.append((msg["method"], msg.get("params") or {}))

    # internals

    def _open_socket(self) -> socket.socket:
        if self._sock is None:
            raise _again(self._error or _lost(self.path))
        return self._sock

    def _fail(self, err: MultiFlexiError) -> NoReturn:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._error = err
        raise _again(err)

    def _send(self, data: bytes, deadline: float | None) -> None:
        sock = self._open_socket()
        try:
            sock.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
            sock.sendall(data)
        except TimeoutError:
            self._fail(DaemonUnavailable(
                f"multiflexid does not read requests on {self.path} (timed out)",
                {"socket": str(self.path)},
            ))
        except OSError:
            # The daemon hung up; it may have said why first (a refusal): read that.
            salvage_until = time.monotonic() + _SALVAGE_SECONDS
            while self._receive(salvage_until) is not None:
                pass
            self._fail(_lost(self.path))

    def _receive(self, deadline: float | None) -> dict[str, Any] | None:
        """The next message, or None at the deadline. A hang-up raises its reason."""
        while True:
            sock = self._open_socket()
            try:
                msg = self._frames.next()
            except ProtocolError as exc:
                self._fail(exc)
            if msg is not None:
                refusal = _hangup_error(msg)
                if refusal is not None:
                    self._fail(refusal)
                return msg
            if deadline is None:
                sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                sock.settimeout(remaining)
            try:
                data = sock.recv(_READ_SIZE)
            except TimeoutError:
                return None
            except OSError:
                data = b""
            if not data:
                self._fail(_lost(self.path))
            self._frames.feed(data)


# --- asyncio client --------------------------------------------------------------------------


class _Opener(Protocol):
    async def __call__(
        self, path: str | Path, *, on_notification: NotificationCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        queue_notifications: bool | None = None,
        timeout: float | None = 30.0,  # noqa: ASYNC109 (the client's per-call default)
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> AsyncClient: ...


class _Connect:
    """``AsyncClient.connect(path, ...)`` makes and connects a client;
    ``client.connect()`` connects an existing one."""

    @overload
    def __get__(self, obj: None, owner: type[AsyncClient]) -> _Opener: ...

    @overload
    def __get__(
        self, obj: AsyncClient, owner: type[AsyncClient] | None = None
    ) -> Callable[[], Coroutine[Any, Any, AsyncClient]]: ...

    def __get__(self, obj: AsyncClient | None, owner: type[AsyncClient] | None = None) -> Any:
        if obj is None:
            return (owner or AsyncClient)._open
        return obj._connect


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._client._transport = transport

    def data_received(self, data: bytes) -> None:
        self._client._data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._client._connection_lost()


class AsyncClient:
    """An asyncio connection to multiflexid; concurrent calls are matched to answers by id.

    Notifications go to ``on_notification(method, params)`` (called in the event loop; if
    it returns an awaitable, that runs as a task) and/or the :attr:`notifications` queue
    (filled when ``queue_notifications`` is true; by default only when there is no
    callback). When the connection drops, every waiting call fails with the reason
    (:class:`DaemonUnavailable`, or the daemon's refusal such as ``Forbidden``), :attr:`error`
    holds it, :attr:`closed` is set and ``on_disconnect(error)`` is called — but not after
    :meth:`close`. A dropped client stays dropped: make a new one to reconnect.
    """

    connect = _Connect()

    def __init__(
        self, path: str | Path, *, on_notification: NotificationCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        queue_notifications: bool | None = None, timeout: float | None = 30.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.on_notification = on_notification
        self.on_disconnect = on_disconnect
        self.queue_notifications = (
            on_notification is None if queue_notifications is None else queue_notifications
        )
        self.notifications: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.error: MultiFlexiError | None = None
        self._frames = _Frames(max_frame)
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._transport: asyncio.Transport | None = None
        self._gone = asyncio.Event()
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @classmethod
    async def _open(
        cls, path: str | Path, *, on_notification: NotificationCallback | None = None,
        on_disconnect: DisconnectCallback | None = None,
        queue_notifications: bool | None = None,
        timeout: float | None = 30.0,  # noqa: ASYNC109 (the client's per-call default)
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> AsyncClient:
        client = cls(
            path, on_notification=on_notification, on_disconnect=on_disconnect,
            queue_notifications=queue_notifications, timeout=timeout, max_frame=max_frame,
        )
        return await client._connect()

    async def _connect(self) -> AsyncClient:
        if self._transport is not None or self.closed.is_set():
            raise RuntimeError("AsyncClient.connect() may be called once; make a new client")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                await loop.create_unix_connection(lambda: _StreamProtocol(self), str(self.path))
        except OSError as exc:  # TimeoutError included
            raise _connect_error(self.path, exc) from None
        if self.error is not None and not self._closing:
            raise _again(self.error)  # refused at once
        return self

    async def __aenter__(self) -> AsyncClient:
        if self._transport is None and not self.closed.is_set():
            await self._connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self.closed.is_set()

    async def close(self) -> None:
        """Hang up; calls still waiting fail with DaemonUnavailable."""
        self._closing = True
        self._finish(DaemonUnavailable("the connection to multiflexid is closed"))
        if self._transport is not None:
            await self._gone.wait()

    async def call(self, method: str, /, **params: Any) -> Any:
        """Call ``method`` with ``params``; the result, or the daemon's error raised."""
        return await self.call_with(method, params)

    async def call_with(
        self, method: str, params: dict[str, Any] | None = None, *,
        # A timeout of our own, not only asyncio.timeout(): its expiry is a
        # DaemonUnavailable naming the method, and it defaults to the client's.
        timeout: float | _Default | None = _DEFAULT,  # noqa: ASYNC109
    ) -> Any:
        """:meth:`call` with params as a dict (for names like ``from``) and its own timeout."""
        if self.closed.is_set():
            raise _again(self.error or _lost(self.path))
        if self._transport is None:
            raise RuntimeError("AsyncClient is not connected: await connect() first")
        limit = self.timeout if isinstance(timeout, _Default) else timeout
        rid = next(self._ids)
        data = encode(request(rid, method, params))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            # A failed write ends the connection; the future then fails with the reason.
            self._transport.write(data)
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            raise _no_answer(method, limit) from None
        finally:
            self._pending.pop(rid, None)

    # internals (called by the protocol, in the event loop)

    def _data_received(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        self._frames.feed(data)
        while True:
            try:
                msg = self._frames.next()
            except ProtocolError as exc:
                self._finish(exc)
                return
            if msg is None:
                return
            refusal = _hangup_error(msg)
            if refusal is not None:
                self._finish(refusal)
                return
            self._dispatch(msg)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = message_kind(msg)
        if kind == "response":
            future = self._pending.pop(msg["id"], None)
            if future is None or future.done():
                return  # the answer to a call that timed out or was cancelled
            if "error" in msg:
                future.set_exception(error_from_response(msg))
            else:
                future.set_result(msg.get("result"))
        elif kind == "notification":
            method, params = msg["method"], msg.get("params") or {}
            if self.queue_notifications:
                self.notifications.put_nowait((method, params))
            if self.on_notification is not None:
                self._run_callback(self.on_notification, method, params)

    def _run_callback(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._callback_done)
        except Exception:
            log.exception("multiflexi client callback %r failed", callback)

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("multiflexi client callback failed", exc_info=task.exception())

    def _connection_lost(self) -> None:
        if not self.closed.is_set() and self._transport is not None:
            self._salvage(self._transport)
        self._finish(_lost(self.path))
        self._gone.set()

    def _salvage(self, transport: asyncio.Transport) -> None:
        """Read what the daemon sent before hanging up that the transport did not (it stops
        reading when a write fails), so a refusal is reported instead of "lost"."""
        tsock = transport.get_extra_info("socket")
        if tsock is None:
            return
        try:
            with tsock.dup() as sock:
                sock.setblocking(False)
                while not self.closed.is_set():
                    data = sock.recv(_READ_SIZE)
                    if not data:
                        break
                    self._data_received(data)
        except OSError:
            pass

    def _finish(self, error: MultiFlexiError) -> None:
        if self.closed.is_set():
            return
        self.error = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(_again(error))
        self._pending.clear()
        if self._transport is not None:
            self._transport.abort()
        self.closed.set()
        if not self._closing and self.on_disconnect is not None:
            self._run_callback(self.on_disconnect, _again(error))
