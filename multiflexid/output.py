"""Job output: from the executor's chunks to ordered rows, the journal and live subscribers.

A :class:`JobOutput` per running job cuts what the job prints into chunks at line ends
(so a secret is never split between two chunks before it is masked), masks secret
values, enforces the per-job cap (what is over it is dropped with a visible marker and
counted) and hands the rows to the :class:`OutputHub`, which writes every job's pending
rows in one transaction a few times a second. If the database is unreachable the rows
stay buffered and are written when it is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from multiflexid.domain.config import MASK, MIN_MASKED_LENGTH

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


class OutputHub:
    """Collects output rows of all jobs and writes them in batches."""

    def __init__(
        self,
        submit: Callable[[list[dict[str, Any]], dict[int, tuple[int, int]]], Future[None]],
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
        self.flow = asyncio.Event()  # set: executors may read output; clear: wait
        self.flow.set()

    def track(self, out: JobOutput) -> None:
        self._live.add(out)

    def untrack(self, out: JobOutput) -> None:
        self._live.discard(out)

    @property
    def pending(self) -> int:
        return len(self._rows)

    def add(self, row: dict[str, Any], dropped: int = 0) -> None:
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

    def flush_soon(self) -> asyncio.Future[None] | None:
        """Hand what is pending to the database writer now, without waiting: writes
        submitted after this one (a job's end) are committed after it, or with it."""
        if not self._rows and not self._sizes:
            return None
        rows, sizes = self._rows, self._sizes
        self._rows, self._sizes = [], {}
        self._pending_bytes = 0
        fut = asyncio.wrap_future(self._submit(rows, sizes))
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
                      exc, len(self._rows))

    async def flush(self) -> bool:
        """Write what is pending; False (and everything kept) if the database failed."""
        fut = self.flush_soon()
        if fut is None:
            return True
        try:
            await fut
        except Exception:
            return False
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval)
            except TimeoutError:
                pass
            self._wake.clear()
            for out in list(self._live):  # partial lines that waited long enough
                out.flush_partial()
            ok = await self.flush()
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

    def mask(self, data: bytes) -> bytes:
        for secret in self._secrets:
            if secret in data:
                data = data.replace(secret, self._mask)
        return data

    def feed(self, stream: str, data: bytes) -> None:
        """Take a chunk from the executor (any size, any boundaries)."""
        buf = self._partial[stream]
        buf.extend(data)
        cut = buf.rfind(b"\n")
        if cut >= 0:
            complete = bytes(buf[: cut + 1])
            del buf[: cut + 1]
            self._emit(stream, complete)
        if buf and len(buf) >= MAX_PARTIAL:
            self._emit(stream, bytes(buf))
            buf.clear()
        if buf:
            self._partial_since.setdefault(stream, asyncio.get_running_loop().time())
        else:
            self._partial_since.pop(stream, None)

    def flush_partial(self, force: bool = False) -> None:
        """Write partial lines that waited too long (or all of them when ``force``)."""
        now = asyncio.get_running_loop().time()
        for stream, since in list(self._partial_since.items()):
            if force or now - since >= PARTIAL_FLUSH_SECONDS:
                buf = self._partial[stream]
                if buf:
                    self._emit(stream, bytes(buf))
                    buf.clear()
                self._partial_since.pop(stream, None)

    def system(self, message: str) -> None:
        """A line from MultiFlexi itself (start failures, cap marker), shown in the output."""
        self._append("system", message.rstrip("\n").encode() + b"\n", force=True)

    def close(self) -> None:
        self.flush_partial(force=True)
        if self.dropped:
            self._append(
                "system",
                f"[multiflexi] {self.dropped} bytes of output over the {self.cap}-byte cap "
                "were dropped\n".encode(),
                force=True,
            )

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
        if not force and self.stored + len(data) > self.cap:
            room = max(0, self.cap - self.stored)
            if room and not self._capped:
                cut = data.rfind(b"\n", 0, room)
                keep = data[: cut + 1] if cut >= 0 else data[:room]
                self._append(stream, keep)
                data = data[len(keep):]
            if not self._capped:
                self._capped = True
                self._append(
                    "system",
                    f"[multiflexi] output cap of {self.cap} bytes reached; further output "
                    "is dropped (see the job's dropped byte count)\n".encode(),
                    force=True,
                )
            self.dropped += len(data)
            self.hub.count_dropped(self.job_id, len(data))
            return
        self.seq += 1
        if stream != "system":
            self.stored += len(data)
        self.hub.add({
            "job_id": self.job_id, "seq": self.seq, "stream": stream,
            "at": datetime.now(UTC), "data": data,
        })
