"""Job output: from the executor's chunks to ordered rows, the journal and live subscribers.

A :class:`JobOutput` per running job cuts what the job prints into chunks at line ends,
masks secret values, enforces the per-job cap (whole lines up to it are kept; everything
after is dropped, counted, and said so by a marker line) and hands the rows to the
:class:`OutputHub`, which writes every job's pending rows in one transaction a few times
a second. If the database is unreachable the rows stay buffered and are written when it
is back.

Masking holds whatever the chunk boundaries and timing: a chunk is cut only where no
secret can straddle the cut. What could still become a secret (the longest tail that is
the beginning of one) is held back until the next data, or the job's end; a secret seen
whole across the cut moves the cut before it. Every row, the journal and the live stream
get only what was masked this way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from multiflexid.aio import nap
from multiflexid.domain.config import MASK, MIN_MASKED_LENGTH
from multiflexid.health import describe

log = logging.getLogger("multiflexid.job")

# Pending output is written at once when it grows past either of these (else every 0.1 s).
FLUSH_BYTES = 4 * 1024 * 1024
# Backpressure: past HIGH bytes not yet written, jobs' output is not read (they block
# writing, as on a slow terminal) until it is back under LOW. This bounds the memory a
# flood of output takes, whatever the database's speed.
HIGH_WATER = 16 * 1024 * 1024
LOW_WATER = 4 * 1024 * 1024
FLUSH_ROWS = 2000
# A partial line is kept at most this long (or this big) before it is written anyway.
PARTIAL_FLUSH_SECONDS = 0.5
MAX_PARTIAL = 64 * 1024
# With no job running and nothing to write, the writing loop sleeps until woken.
IDLE_SLEEP = 3600.0


class OutputHub:
    """Collects output rows of all jobs and writes them in batches."""

    def __init__(
        self,
        submit: Callable[[list[dict[str, Any]], dict[int, tuple[int, int]], bool],
                         Future[None]],
        publish: Callable[[str, dict[str, Any]], None],
        interval: float = 0.1,
    ) -> None:
        self._submit = submit
        self._publish = publish
        self.interval = interval
        self._rows: list[dict[str, Any]] = []
        self._sizes: dict[int, tuple[int, int]] = {}
        self._wake = asyncio.Event()
        self.failing_since: datetime | None = None
        self._live: set[JobOutput] = set()  # outputs of running jobs (partial lines)
        self._pending_bytes = 0
        self._unwritten = 0  # pending plus handed to the writer, not yet committed
        self._inflight: set[asyncio.Future[None]] = set()  # handed over, not yet committed
        self.flow = asyncio.Event()  # set: executors may read output; clear: wait
        self.flow.set()

    def track(self, out: JobOutput) -> None:
        self._live.add(out)
        self._wake.set()  # the writing loop ticks again (it sleeps while nothing runs)

    def untrack(self, out: JobOutput) -> None:
        self._live.discard(out)

    @property
    def pending(self) -> int:
        return len(self._rows)

    def add(self, row: dict[str, Any], dropped: int = 0) -> None:
        if not self._rows and not self._live:
            self._wake.set()  # (the writing loop may be asleep)
        self._rows.append(row)
        self._pending_bytes += len(row["data"])
        self._unwritten += len(row["data"])
        if self._unwritten > HIGH_WATER and self.flow.is_set():
            self.flow.clear()
        self._count(row["job_id"], len(row["data"]), dropped)
        self._publish("job.output", row)
        if self._pending_bytes > FLUSH_BYTES or len(self._rows) > FLUSH_ROWS:
            self._wake.set()  # a busy job: write now, not at the next interval

    def count_dropped(self, job_id: int, dropped: int) -> None:
        self._count(job_id, 0, dropped)

    def _count(self, job_id: int, added: int, dropped: int) -> None:
        before = self._sizes.get(job_id, (0, 0))
        self._sizes[job_id] = (before[0] + added, before[1] + dropped)

    def flush_soon(self, lazy: bool = True) -> asyncio.Future[None] | None:
        """Hand what is pending to the database writer now, without waiting: writes
        submitted after this one (a job's end) are committed after it, or with it. Lazy
        (the writer's kind): it may wait a moment to share a commit with other writes."""
        if not self._rows and not self._sizes:
            return None
        rows, sizes = self._rows, self._sizes
        self._rows, self._sizes = [], {}
        self._pending_bytes = 0
        fut = asyncio.wrap_future(self._submit(rows, sizes, lazy))
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        fut.add_done_callback(lambda f: self._written(f, rows, sizes))
        return fut

    def _written(self, fut: asyncio.Future[None], rows: list[dict[str, Any]],
                 sizes: dict[int, tuple[int, int]]) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is None:
            self._unwritten -= sum(len(r["data"]) for r in rows)
            if self._unwritten < LOW_WATER and not self.flow.is_set():
                self.flow.set()
            if self.failing_since is not None:
                log.warning("job output written again after a database outage since %s",
                            self.failing_since.isoformat())
                self.failing_since = None
            return
        # Keep them, ahead of anything that arrived meanwhile (rows are ordered by seq).
        self._rows = rows + self._rows
        self._pending_bytes += sum(len(r["data"]) for r in rows)
        for job_id, (a, d) in sizes.items():
            b = self._sizes.get(job_id, (0, 0))
            self._sizes[job_id] = (a + b[0], d + b[1])
        if self.failing_since is None:
            self.failing_since = datetime.now(UTC)
            log.error("cannot write job output (%s); %d chunk(s) kept in memory",
                      describe(exc), len(self._rows))

    async def flush(self, lazy: bool = True) -> bool:
        """Write what is pending; False (and everything kept) if the database failed."""
        fut = self.flush_soon(lazy)
        if fut is None:
            return True
        try:
            await fut
        except Exception:
            return False
        return True

    async def written(self) -> bool:
        """Everything published so far is committed: what is pending is written now, and
        what the writer holds already (a lazy write waiting to share a commit) is waited
        for. A client that subscribed to a job's output, then reads it, so misses no line
        (a line published before its subscription is in what it reads); False if the
        database failed."""
        ok = await self.flush(lazy=False)
        handed = list(self._inflight)
        if handed:
            done = await asyncio.gather(*handed, return_exceptions=True)
            ok = ok and not any(isinstance(r, BaseException) for r in done)
        return ok

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            # Every interval while jobs run or rows wait; else asleep until one does.
            busy = self._live or self._rows or self._sizes
            await nap(self._wake, stopping, self.interval if busy else IDLE_SLEEP)
            for out in list(self._live):  # partial lines that waited long enough
                out.flush_partial()
            # A little output shares a commit with other writes (lazy); a flood is
            # written at once (the writer would only wait with it).
            flood = self._pending_bytes > FLUSH_BYTES or len(self._rows) > FLUSH_ROWS
            ok = await self.flush(lazy=not flood)
            if not ok:
                await asyncio.sleep(min(5.0, self.interval * 10))
        await self.flush()


class JobOutput:
    """The output of one running job."""

    def __init__(
        self,
        job_id: int,
        hub: OutputHub,
        *,
        secrets: list[str],
        cap: int,
        log_fields: dict[str, Any],
        lines: Callable[[dict[str, Any], str, str], None] | None = None,
        journal_budget: int = 1024 * 1024,
    ) -> None:
        self.job_id = job_id
        self.hub = hub
        self.cap = cap
        self.seq = 0
        self.stored = 0
        self.dropped = 0
        self.log_fields = log_fields
        self.lines = lines  # the journal (or stderr), line by line, up to journal_budget
        self.journal_budget = journal_budget
        self._journaled = 0
        self._secrets = [s.encode() for s in secrets if len(s) >= MIN_MASKED_LENGTH]
        self._mask = MASK.encode()
        self._partial: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self._partial_since: dict[str, float] = {}
        self._capped = False
        self._at_line_start = True  # the last row stored ended a line

    def mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, self._mask)
        return data

    def _safe_end(self, buf: bytearray, end: int) -> int:
        """The largest cut at or before ``end`` that no secret can straddle: not inside a
        tail of ``buf`` that begins a secret (it may be completed by the next data), not
        inside a whole secret."""
        size = len(buf)
        for secret in self._secrets:  # the longest tail that is the start of a secret
            first = secret[:1]
            start = buf.find(first, max(0, size - len(secret) + 1))
            while start != -1:
                if secret.startswith(bytes(buf[start:])):
                    end = min(end, start)
                    break
                start = buf.find(first, start + 1)
        moved = True
        while moved:  # a whole secret across the cut: cut before it
            moved = False
            for secret in self._secrets:
                at = buf.find(secret, max(0, end - len(secret) + 1), end + len(secret) - 1)
                if at != -1 and at < end:
                    end, moved = at, True
        return end

    def _release(self, stream: str, end: int, force: bool = False) -> None:
        """Emit ``buf[:end]`` of ``stream``, or less if a secret could straddle the cut."""
        buf = self._partial[stream]
        if self._secrets and not force:
            end = self._safe_end(buf, end)
        if end > 0:
            data = bytes(buf[:end])
            del buf[:end]
            self._emit(stream, data)

    def feed(self, stream: str, data: bytes) -> None:
        """Take a chunk from the executor (any size, any boundaries)."""
        buf = self._partial[stream]
        buf.extend(data)
        cut = buf.rfind(b"\n")
        if cut >= 0:
            self._release(stream, cut + 1)
        if len(buf) >= MAX_PARTIAL:
            self._release(stream, len(buf))
        if buf:
            self._partial_since.setdefault(stream, asyncio.get_running_loop().time())
        else:
            self._partial_since.pop(stream, None)

    def flush_partial(self, force: bool = False) -> None:
        """Write partial lines that waited too long (or all of them when ``force``); a tail
        that may be the start of a secret waits for more (unless ``force``)."""
        now = asyncio.get_running_loop().time()
        for stream, since in list(self._partial_since.items()):
            if force or now - since >= PARTIAL_FLUSH_SECONDS:
                buf = self._partial[stream]
                self._release(stream, len(buf), force)
                if buf:
                    self._partial_since[stream] = now
                else:
                    self._partial_since.pop(stream, None)

    def system(self, message: str) -> None:
        """A line from MultiFlexi itself (start failures, cap marker), shown in the output
        on a line of its own."""
        text = message.rstrip("\n").encode() + b"\n"
        self._append("system", text if self._at_line_start else b"\n" + text, force=True)

    def close(self) -> None:
        self.flush_partial(force=True)
        if self.dropped:
            self.system(f"[multiflexi] {self.dropped} bytes of output over the {self.cap}-byte "
                        "cap were dropped")

    def _emit(self, stream: str, data: bytes) -> None:
        data = self.mask(data)
        if self.lines is not None and self._journaled < self.journal_budget:
            self._journaled += len(data)
            text = data.decode("utf-8", "replace")
            if self._journaled >= self.journal_budget:
                text += (f"\n[multiflexi] the rest of this job's output is in its record only "
                         f"(journal_output_bytes = {self.journal_budget})")
            self.lines(self.log_fields, stream, text)
        self._append(stream, data)

    def _append(self, stream: str, data: bytes, force: bool = False) -> None:
        """Store a row; the job's own output only within the cap: whole lines up to it
        (a head of the first line if that alone is longer), then nothing more."""
        if not force and (self._capped or self.stored + len(data) > self.cap):
            if not self._capped:
                room = self.cap - self.stored
                cut = data.rfind(b"\n", 0, room)
                keep = data[: cut + 1] if cut >= 0 else data[:room] if not self.stored else b""
                if keep:
                    self._append(stream, keep)
                    data = data[len(keep):]
                self._capped = True
                self.system(f"[multiflexi] output cap of {self.cap} bytes reached; further "
                            "output is dropped (see the job's dropped byte count)")
            self.dropped += len(data)
            self.hub.count_dropped(self.job_id, len(data))
            return
        if not data:
            return
        self.seq += 1
        if stream != "system":
            self.stored += len(data)
        self._at_line_start = data.endswith(b"\n")
        self.hub.add({
            "job_id": self.job_id, "seq": self.seq, "stream": stream,
            "at": datetime.now(UTC), "data": data,
        })
