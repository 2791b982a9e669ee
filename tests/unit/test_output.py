"""The output pipeline's rules: line cuts, masking, the cap, the journal budget, backpressure.

The database writer is replaced by a recording function here (the real writer is
exercised by every daemon test); what matters is what the hub hands it and when.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

import pytest

from multiflexid import output
from multiflexid.output import JobOutput, OutputHub


class Writer:
    """Records the batches the hub submits; completes them when told to."""

    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self.futures: list[Future[None]] = []

    def __call__(self, rows: list[dict[str, Any]], sizes: dict[int, tuple[int, int]]
                 ) -> Future[None]:
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
