"""``job output --tail N`` counts lines as ``tail -n`` does, across chunks and streams,
reading back only as far as needed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from multiflexid.cli.tail import Chunk, last_lines


def _pages(chunks: list[Chunk], size: int, read: list[int]) -> Iterator[list[Chunk]]:
    """``chunks`` from the end backwards, ``size`` a page; ``read`` counts the pages."""
    end = len(chunks)
    while end > 0:
        read.append(1)
        yield chunks[max(0, end - size):end]
        end -= size


def _text(chunks: list[Chunk]) -> bytes:
    return b"".join(c[2] for c in chunks)


OUT: list[Chunk] = [(1, "stdout", b"one\ntw"), (2, "stdout", b"o\nthree\n"),
                    (3, "stderr", b"warn\n"), (4, "system", b"[multiflexi] note\n"),
                    (5, "stdout", b"four\nfive\n")]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 50])
def test_the_last_n_lines_as_tail_counts_them(n: int) -> None:
    whole = _text(OUT)
    expected = b"".join(whole.splitlines(keepends=True)[-n:])
    for size in (1, 2, 10):
        assert _text(last_lines(_pages(OUT, size, []), n)) == expected


def test_an_unterminated_last_line_is_a_line() -> None:
    out: list[Chunk] = [(1, "stdout", b"a\nb\n"), (2, "stdout", b"c\nno newline")]
    assert _text(last_lines(_pages(out, 1, []), 1)) == b"no newline"
    assert _text(last_lines(_pages(out, 1, []), 2)) == b"c\nno newline"


def test_streams_stay_with_their_lines_and_old_pages_are_not_read() -> None:
    read: list[int] = []
    got = last_lines(_pages(OUT, 1, read), 3)
    assert got == [(4, "system", b"[multiflexi] note\n"), (5, "stdout", b"four\nfive\n")]
    # back to the newline that ends the line before them (in chunk 3), no further
    assert len(read) == 3


def test_no_output_gives_nothing() -> None:
    assert last_lines(_pages([], 5, []), 3) == []
    assert last_lines(_pages([(1, "stdout", b"")], 5, []), 3) == []
