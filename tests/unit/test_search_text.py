"""What a text search compares (store/search.py), the job.list parameter that takes one
state or several, and the TUI's search syntax (multiflexi_tui/jobsearch.py)."""

from __future__ import annotations

import pytest

from multiflexi.errors import InvalidInput
from multiflexi.protocol import Params
from multiflexi_tui import jobsearch
from multiflexid.store import textmatch as search


def test_chunks_are_read_as_postgresql_reads_them() -> None:
    assert search.output_text("Účetní\n".encode()) == "Účetní\n"
    assert search.output_text(b"caf\xe9 ok") == "café ok"  # not UTF-8: Latin-1
    assert search.output_text(b"a\x00b\\") == "a\\000b\\\\"  # NUL: escapes, as encode()
    assert search.contains("ÚČETNÍ doklad".encode(), search.needle("účetní DOK"))
    assert not search.contains(b"tok-********", search.needle("tok-SECRET"))
    assert search.matching_line(b"first\nsecond ERROR x\nthird ERROR\n",
                                "error") == "second ERROR x"
    long_line = ("x" * 500 + "needle" + "y" * 500).encode()
    cut = search.matching_line(long_line, "needle")
    assert len(cut) == 200 and "needle" in cut


@pytest.mark.parametrize(("text", "why"), [
    ("ab", "at least 3 characters are needed (the index holds trigrams)"),
    ("x" * 201, "at most 200 characters"),
    ("one\ntwo", "one line only (a match is within a line)"),
    ("abc", None), ("   ", None), ("Účet", None),
])
def test_what_can_be_searched_for(text: str, why: str | None) -> None:
    assert search.problem(text) == why


def test_the_index_is_asked_for_a_few_trigrams_the_recheck_decides() -> None:
    assert search.fts_query("abc") == '"abc"'
    assert search.fts_query('say "hi"') == '"say" AND " ""h" AND "hi"""'
    many = search.fts_query("refused by abraflexi-3.example:5434")
    assert many.count(" AND ") == search.MAX_GRAMS - 1 and many.endswith('"434"')
    assert search.like_pattern("100%_a\\b") == "%100\\%\\_a\\\\b%"


def test_one_state_or_a_list_of_them() -> None:
    states = ("failed", "lost", "succeeded")
    assert Params({"state": "failed"}).enum_list("state", states) == ["failed"]
    assert Params({"state": ["failed", "lost"]}).enum_list("state", states) == ["failed",
                                                                                 "lost"]
    assert Params({}).enum_list("state", states) == []
    with pytest.raises(InvalidInput) as bad:
        Params({"state": ["failed", "done"]}).enum_list("state", states)
    assert bad.value.data["field"] == "params.state[1]"
    with pytest.raises(InvalidInput) as bad:
        Params({"state": 3}).enum_list("state", states)
    assert bad.value.message == ("params.state: must be one of 'failed', 'lost', "
                                 "'succeeded' or a list of them, not 3")


def test_the_tui_search_syntax() -> None:
    s = jobsearch.parse('state:failed,lost company:acme app:Importer template:12 '
                        'since:2024-05-01 until:2024-06-01T08:00:00+02:00 invoice "FV 12"')
    assert s.params == {"state": ["failed", "lost"], "runtemplate_id": 12,
                        "since": "2024-05-01T00:00:00+00:00",
                        "until": "2024-06-01T08:00:00+02:00", "text": "invoice FV 12"}
    assert (s.company, s.app, s.problems) == ("acme", "Importer", [])
    assert jobsearch.parse('"state: x" ok').params == {"text": "state: x ok"}
    assert jobsearch.parse("state:done since:soon").problems == [
        "no state 'done'", "since: 'soon' is not a date"]
    assert jobsearch.parse("ok").problems == ["text needs 3+ characters"]
    assert jobsearch.parse('open "quote').params == {"text": "open quote"}
    job = {"state": "failed", "runtemplate_id": 12, "company_id": 1, "app_id": 2}
    assert jobsearch.matches(s, job, 1, 2)
    assert not jobsearch.matches(s, {**job, "state": "succeeded"}, 1, 2)
    assert not jobsearch.matches(s, job, 3, 2)
