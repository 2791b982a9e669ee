"""What a text search in job output matches (the same on SQLite and PostgreSQL).

The jobs with an output chunk that contains the text: a substring, compared in Unicode
lower case, at least :data:`MIN_LENGTH` characters, on one line. A chunk is read as UTF-8,
or as Latin-1 when it is not valid UTF-8 (so its ASCII text is still found). Output is
stored with secrets masked, so no secret is in an index or found by a search. How each
database finds it fast: store/search_sqlite.py, store/search_pg.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select

MIN_LENGTH = 3
MAX_LENGTH = 200
MAX_GRAMS = 6


def output_text(data: bytes) -> str:
    """A chunk as text, as ``multiflexi_output_text`` reads it on PostgreSQL: UTF-8, else
    Latin-1; a NUL byte (which no PostgreSQL text holds) makes it backslash escapes."""
    if b"\x00" not in data:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return "".join(chr(b) if 32 <= b < 127 and b != 92 else
                   "\\\\" if b == 92 else f"\\{b:03o}" for b in data)


def needle(text_: str) -> str:
    """What chunks are compared with (the caller checked :func:`problem`)."""
    return text_.lower()


def problem(text_: str) -> str | None:
    """Why ``text_`` cannot be searched for, or None."""
    if len(text_) < MIN_LENGTH:
        return f"at least {MIN_LENGTH} characters are needed (the index holds trigrams)"
    if len(text_) > MAX_LENGTH:
        return f"at most {MAX_LENGTH} characters"
    if "\n" in text_ or "\r" in text_:
        return "one line only (a match is within a line)"
    if "\x00" in text_:
        return "must not contain a NUL character"
    return None


def contains(data: bytes | None, folded: str | None) -> bool:
    """Whether a chunk holds the (lower-cased) text: the recheck of every candidate."""
    if data is None or folded is None:
        return False
    return folded in output_text(bytes(data)).lower()


def matching_line(data: bytes | str, folded: str, limit: int = 200) -> str:
    """The first line of a chunk that holds the text (cut to ``limit`` characters around
    it)."""
    text_ = data if isinstance(data, str) else output_text(data)
    for line in text_.splitlines():
        at = line.lower().find(folded)
        if at >= 0:
            if len(line) <= limit:
                return line
            start = max(0, min(at - limit // 4, len(line) - limit))
            return line[start:start + limit]
    return ""


def first_lines(rows: Iterable[Any], folded: str) -> dict[int, tuple[int, str]]:
    """From matching chunks (job_id, seq, data or text): each job's first, and its line."""
    out: dict[int, tuple[int, str]] = {}
    for job_id, seq, chunk in sorted(rows, key=lambda r: (r[0], r[1])):
        if job_id not in out:
            out[job_id] = (seq, matching_line(chunk, folded))
    return out


def fts_query(text_: str) -> str:
    """The FTS5 query of trigrams of ``text_``: candidates for the recheck. A chunk holding
    the text holds all of them; a few that do not overlap (and the last) narrow as well
    as all would, and each more costs a posting list to read."""
    grams = [text_[i:i + 3] for i in range(0, len(text_) - 2, 3)] + [text_[-3:]]
    if len(grams) > MAX_GRAMS:
        step = len(grams) / MAX_GRAMS
        grams = [grams[int(k * step)] for k in range(MAX_GRAMS - 1)] + [grams[-1]]
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in dict.fromkeys(grams))


def like_pattern(text_: str) -> str:
    escaped = text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass
class Order:
    """How a page is ordered and where it starts: ``by_id`` pages are streamed from the
    index in id order (``after_id``: the last id of the previous page)."""

    by_id: bool
    desc: bool
    after_id: int | None = None
    order_by: list[Any] = field(default_factory=list)
    keyset: ColumnElement[bool] | None = None


def ordered(query: Select[Any], order: Order, limit: int) -> Select[Any]:
    if order.keyset is not None:
        query = query.where(order.keyset)
    return query.order_by(*order.order_by).limit(limit)
