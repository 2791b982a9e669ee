"""The output pipeline's rules: line cuts, masking, the cap, the journal budget, backpressure.

The database writer is replaced by a recording function here (the real writer is
exercised by every daemon test); what matters is what the hub hands it and when.
"""

from __future__ import annotations

import asyncio
import itertools
from concurrent.futures import Future
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multiflexid import output
from multiflexid.output import JobOutput, OutputHub


class Writer:
    """Records the batches the hub submits; completes them when told to."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.futures: list[Future[None]] = []

    def __call__(self, rows: list[dict[str, Any]], sizes: dict[int, tuple[int, int]],
                 lazy: bool) -> Future[None]:
        self.batches.append(rows)
        fut: Future[None] = Future()
        self.futures.append(fut)
        return fut

    def commit_all(self) -> None:
        for fut in self.futures:
            if not fut.done():
                fut.set_result(None)


def _hub(writer: Writer) -> OutputHub:
    return OutputHub(writer, lambda kind, payload: None)


def test_lines_are_cut_at_line_ends_and_secrets_masked() -> None:
    asyncio.run(_lines_are_cut())


async def _lines_are_cut() -> None:
    writer = Writer()
    hub = _hub(writer)
    out = JobOutput(1, hub, secrets=["hunter22"], cap=10_000, log_fields={})
    out.feed("stdout", b"pass hun")
    out.feed("stdout", b"ter22 ok\npartial")  # the secret straddles two reads
    out.close()
    hub.flush_soon()
    data = b"".join(r["data"] for r in writer.batches[0])
    assert data == b"pass ******** ok\npartial"


def test_journal_gets_lines_up_to_its_budget_then_one_note() -> None:
    asyncio.run(_journal_budget())


async def _journal_budget() -> None:
    sent: list[tuple[str, str]] = []
    out = JobOutput(1, _hub(Writer()), secrets=[], cap=10_000, log_fields={"X": 1},
                    lines=lambda fields, stream, text: sent.append((stream, text)),
                    journal_budget=20)
    out.feed("stdout", b"0123456789\n")
    out.feed("stderr", b"abcdefghij\n")
    out.feed("stdout", b"never journaled\n")
    texts = "".join(text for _stream, text in sent)
    assert "0123456789" in texts and "abcdefghij" in texts
    assert "never journaled" not in texts
    assert "the rest of this job's output is in its record only" in texts
    assert sent[1][0] == "stderr"


def test_backpressure_stops_reading_above_high_water(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "HIGH_WATER", 1000)
    monkeypatch.setattr(output, "LOW_WATER", 300)
    asyncio.run(_backpressure())


async def _backpressure() -> None:
    writer = Writer()
    hub = _hub(writer)
    out = JobOutput(1, hub, secrets=[], cap=1_000_000, log_fields={})
    for _ in range(12):
        out.feed("stdout", b"x" * 99 + b"\n")
    assert not hub.flow.is_set()  # 1200 bytes not yet written: executors must wait
    hub.flush_soon()
    assert not hub.flow.is_set()  # handed to the writer is not written yet
    writer.commit_all()
    await asyncio.sleep(0)  # the commit's callback runs on the loop
    await asyncio.sleep(0)
    assert hub.flow.is_set()  # all written: read again


def _stored(writer: Writer, hub: OutputHub, stream: str | None = None) -> bytes:
    hub.flush_soon()
    return b"".join(r["data"] for batch in writer.batches for r in batch
                    if stream is None or r["stream"] == stream)


def test_a_secret_across_the_64k_cut_is_masked() -> None:
    """A line growing past MAX_PARTIAL is cut; a secret straddling that cut is held back
    and masked whole (it used to be stored as ``hun`` + ``ter22``)."""
    asyncio.run(_across_the_64k_cut())


async def _across_the_64k_cut() -> None:
    writer, published = Writer(), []
    hub = OutputHub(writer, lambda kind, payload: published.append(payload["data"]))
    journaled: list[str] = []
    out = JobOutput(1, hub, secrets=["hunter22"], cap=10_000_000, log_fields={},
                    lines=lambda _f, _s, text: journaled.append(text))
    out.feed("stdout", b"x" * (output.MAX_PARTIAL - 3))
    out.feed("stdout", b"hun")
    out.feed("stdout", b"ter22\n")
    out.close()
    data = _stored(writer, hub)
    assert b"hun" not in data and data == b"x" * (output.MAX_PARTIAL - 3) + b"********\n"
    assert b"".join(published) == data  # the live stream got the same
    assert "hun" not in "".join(journaled)


def test_a_partial_line_flushed_by_time_never_splits_a_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``pass: hun``, a pause longer than the partial-line wait, then ``ter22``."""
    monkeypatch.setattr(output, "PARTIAL_FLUSH_SECONDS", 0.0)
    asyncio.run(_flushed_by_time())


async def _flushed_by_time() -> None:
    writer = Writer()
    hub = _hub(writer)
    out = JobOutput(1, hub, secrets=["hunter22"], cap=10_000, log_fields={})
    out.feed("stdout", b"pass: hun")
    out.flush_partial()  # the timed flush: shows "pass: ", keeps "hun" back
    assert _stored(writer, hub) == b"pass: "
    out.flush_partial()
    assert _stored(writer, hub) == b"pass: "
    out.feed("stdout", b"ter22\n")
    out.close()
    assert _stored(writer, hub) == b"pass: ********\n"


def test_a_tail_that_only_looks_like_a_secret_is_shown_at_the_end() -> None:
    asyncio.run(_tail_at_the_end())


async def _tail_at_the_end() -> None:
    writer = Writer()
    hub = _hub(writer)
    out = JobOutput(1, hub, secrets=["hunter22"], cap=10_000, log_fields={})
    out.feed("stdout", b"ok hun")
    out.close()
    assert _stored(writer, hub) == b"ok hun"


SECRETS = ["hunter22", "s3cr3t-TOKEN", "aab", "multi\nline-secret"]


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(["hunter22", "s3cr3t-TOKEN", "aab", "aa", "hun", "a",
                                     "multi\nline-secret", "multi\n", "ter22", "x", "\n",
                                     "pass: ", "hunter2", "s3cr3t"]),
                    max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    flushes=st.sets(st.integers(min_value=0, max_value=12)),
)
def test_no_secret_survives_any_chunking_or_timing(pieces: list[str], cuts: list[int],
                                                  flushes: set[int]) -> None:
    """Whatever the chunk boundaries and wherever a timed flush falls, what is stored is
    exactly the masked output, and no secret is in it."""
    text = "".join(pieces).encode()
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]

    async def run() -> bytes:
        writer = Writer()
        hub = _hub(writer)
        out = JobOutput(1, hub, secrets=SECRETS, cap=10_000_000, log_fields={})
        for i, chunk in enumerate(chunks):
            out.feed("stdout", chunk)
            if i in flushes:
                out.flush_partial(force=False)
                for stream in out._partial_since:  # as if the wait had passed
                    out._partial_since[stream] -= output.PARTIAL_FLUSH_SECONDS
                out.flush_partial()
        out.close()
        return _stored(writer, hub)

    stored = asyncio.run(run())
    expected = text
    for secret in sorted(SECRETS, key=len, reverse=True):
        expected = expected.replace(secret.encode(), b"********")
    for secret in SECRETS:
        assert secret.encode() not in stored
    assert stored == expected


def test_the_cap_keeps_whole_lines_and_nothing_after() -> None:
    """Lines read one at a time: the line that does not fit is not cut into the output
    (a cut line used to run into the marker), and nothing after the cap is stored, not
    even a later chunk small enough to fit."""
    asyncio.run(_cap_whole_lines())


async def _cap_whole_lines() -> None:
    writer = Writer()
    hub = _hub(writer)
    out = JobOutput(1, hub, secrets=[], cap=1000, log_fields={})
    lines = [f"line-{i}-xxxxxxxxxxxxxxxxxxxx\n".encode() for i in range(200)]
    for line in lines:
        out.feed("stdout", line)
    out.feed("stdout", b"ok\n")  # small enough for the room left: still dropped
    out.close()
    kept = _stored(writer, hub, "stdout")
    assert len(kept) <= 1000 and kept.endswith(b"\n")
    assert b"".join(lines).startswith(kept)
    total = sum(map(len, lines)) + 3
    assert out.dropped == total - len(kept)
    text = _stored(writer, hub).decode()
    assert "\n[multiflexi] output cap of 1000 bytes reached" in "\n" + text
    for line in text.splitlines():
        assert line.startswith("[multiflexi]") or line.encode() + b"\n" in lines


def test_a_first_line_longer_than_the_cap_keeps_its_head() -> None:
    asyncio.run(_long_first_line())


async def _long_first_line() -> None:
    writer = Writer()
    hub = _hub(writer)
    out = JobOutput(1, hub, secrets=[], cap=100, log_fields={})
    out.feed("stdout", b"y" * 500 + b"\n")
    out.close()
    assert _stored(writer, hub, "stdout") == b"y" * 100
    text = _stored(writer, hub).decode()
    assert text.startswith("y" * 100 + "\n[multiflexi] output cap of 100 bytes reached")
    assert out.dropped == 401
