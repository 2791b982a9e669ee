"""The container executors' blocking side: the demultiplexed log stream of a container,
followed in a thread of its own, and long calls in threads of their own."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

from multiflexid.executors.base import OutputCallback

log = logging.getLogger(__name__)

T = TypeVar("T")

_STREAMS = {1: "stdout", 2: "stderr"}
_FRAME = struct.Struct(">BxxxL")  # the header of each stdout/stderr frame


class LogSource(Protocol):
    """What a log stream needs of its engine (a ContainerExecutor)."""

    name: str

    def _api_logs(self, cid: str, *, follow: bool) -> Any: ...
    def _api_inspect(self, cid: str) -> dict[str, Any]: ...


def frames(raw: Any, aborted: threading.Event) -> Iterator[tuple[str | None, bytes]]:
    """Yields (stream or None, bytes) from a multiplexed log response until its end."""
    while not aborted.is_set():
        header = _read_exactly(raw, _FRAME.size)
        if len(header) < _FRAME.size:
            return
        kind, size = _FRAME.unpack(header)
        yield _STREAMS.get(kind), _read_exactly(raw, size)


def _read_exactly(raw: Any, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0 and (chunk := raw.read(size)):
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class LogStream:
    """Follows the container's log in its own thread; hands each frame to ``output`` on
    the event loop's thread. The stream ends by itself once the container has exited;
    :meth:`finish` waits for that and cuts the connection if it does not come in time."""

    def __init__(self, engine: LogSource, cid: str, loop: asyncio.AbstractEventLoop,
                 output: OutputCallback) -> None:
        self._engine = engine
        self._cid = cid
        self._loop = loop
        self._output = output
        self._response: Any = None
        self._closed = False  # on the loop thread: deliver nothing more
        self._aborted = threading.Event()
        self._done: asyncio.Future[None] = loop.create_future()
        self.sent = {"stdout": 0, "stderr": 0}  # bytes handed to the loop, per stream
        self._digest = {"stdout": hashlib.blake2b(), "stderr": hashlib.blake2b()}  # of those
        self.broken = False  # ended before the container did: the log may have more
        self.err_head = b""  # the first bytes of stderr

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"{self._engine.name}-logs-{self._cid[:12]}",
                         daemon=True).start()

    def _deliver(self, stream: str, data: bytes) -> None:
        if not self._closed:
            self._output(stream, data)

    def _run(self) -> None:
        try:
            response = self._engine._api_logs(self._cid, follow=True)
            self._response = response
            try:
                for stream, data in frames(response.raw, self._aborted):
                    if stream is None:
                        log.warning("log stream of %s: %r", self._cid[:12], data[:300])
                    elif data:
                        if stream == "stderr" and len(self.err_head) < 512:
                            self.err_head += data[: 512 - len(self.err_head)]
                        self.sent[stream] += len(data)
                        self._digest[stream].update(data)
                        self._loop.call_soon_threadsafe(self._deliver, stream, data)
            finally:
                response.close()
            if not self._aborted.is_set():
                state = self._engine._api_inspect(self._cid)["State"]
                self.broken = bool(state.get("Running")) or state.get("Status") == "running"
        except Exception as e:
            if not self._aborted.is_set():
                self.broken = True
                log.warning("log stream of container %s broke: %r", self._cid[:12], e)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone
                self._loop.call_soon_threadsafe(_resolve, self._done)

    def _abort(self) -> None:
        self._aborted.set()
        with contextlib.suppress(Exception):
            self._response.raw.connection.sock.shutdown(socket.SHUT_RDWR)

    async def finish(self, within: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._done), within)
        except TimeoutError:
            log.warning("log stream of container %s did not end; cut it", self._cid[:12])
            self.broken = True
            self._abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._done), 1.0)

    def catch_up(self, frames: Iterator[tuple[str | None, bytes]]) -> bool:
        """In a thread, once the stream has ended: deliver what the complete log has beyond
        what the stream sent; False if what it sent is not the beginning of the log (then
        nothing more of that stream is delivered: it would be out of place)."""
        skip = dict(self.sent)
        seen = {"stdout": hashlib.blake2b(), "stderr": hashlib.blake2b()}
        same: dict[str, bool | None] = {"stdout": None, "stderr": None}
        for stream, data in frames:
            if stream is None:
                continue
            cut = min(skip[stream], len(data))
            if cut:
                seen[stream].update(data[:cut])
                skip[stream] -= cut
            if same[stream] is None and not skip[stream]:
                same[stream] = seen[stream].digest() == self._digest[stream].digest()
            if data[cut:] and same[stream]:
                self.sent[stream] += len(data) - cut
                self._loop.call_soon_threadsafe(self._deliver, stream, data[cut:])
        return all(same[s] is not False and not skip[s] for s in same)

    def close(self) -> None:
        self._closed = True
        self._aborted.set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def in_thread(
    loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any, name: str
) -> asyncio.Future[T]:
    """Run a long blocking call in its own daemon thread; its outcome as a future."""
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: tuple[bool, Any]) -> None:
        ok, value = outcome
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def target() -> None:
        try:
            outcome: tuple[bool, Any] = (True, fn(*args))
        except BaseException as e:
            outcome = (False, e)
        with contextlib.suppress(RuntimeError):  # the loop is gone
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    # After a give-up nobody awaits it: don't warn about an exception never retrieved.
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


async def shielded(coro: Any) -> Any:
    """Finish ``coro`` even if the caller is cancelled meanwhile (cleanup must happen)."""
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), 60)
        raise
