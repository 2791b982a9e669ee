"""``job output --tail N``: the chunks that hold a job's last N lines, read from the end
backwards (a job that printed 200 MB is not read whole for its last lines)."""

from __future__ import annotations

from collections.abc import Iterable

# (seq, stream, data): one chunk of output, whichever way it was read
Chunk = tuple[int, str, bytes]


def last_lines(pages: Iterable[list[Chunk]], n: int) -> list[Chunk]:
    """The last ``n`` lines of the output ``pages`` gives from its end backwards (each
    page oldest first, every page older than the one before), as ``tail -n`` counts them
    (an unterminated last line is a line): the chunks holding them, oldest first, the
    first cut where they begin. Pages are read only as far back as needed."""
    got: list[Chunk] = []  # newest first
    newlines = 0
    needed: int | None = None  # newlines to go back over: n, one more after a final "\n"
    for page in pages:
        for chunk in reversed(page):
            data = chunk[2]
            if not data:
                continue
            if needed is None:
                needed = n + (1 if data.endswith(b"\n") else 0)
            got.append(chunk)
            newlines += data.count(b"\n")
            if newlines >= needed:
                return _cut(got[::-1], newlines - needed + 1)
    return got[::-1]


def _cut(chunks: list[Chunk], drop: int) -> list[Chunk]:
    """``chunks`` without their first ``drop`` lines (all in the first chunk)."""
    seq, stream, data = chunks[0]
    at = -1
    for _ in range(drop):
        at = data.index(b"\n", at + 1)
    rest = data[at + 1:]
    return ([(seq, stream, rest)] if rest else []) + chunks[1:]
