"""The jobs view's `/` search: the typed text, turned into a job.list query the daemon runs.

    state:failed state:lost company:acme app:Importer template:12 since:2024-05-01
    until:2024-06-01 invoice FV-0012

Tokens (any order, each at most once except ``state``): ``state:NAME`` (repeat or
comma-separate for any of several), ``company:SLUG|ID``, ``app:NAME|ID``,
``template:ID``, ``since:`` and ``until:`` an ISO date or time (UTC unless it says
otherwise; bounds when jobs were created). The rest is text the job's output must
contain: on one line, any case, at least 3 characters; quote it ("state: x") to search
for words that look like tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multiflexi.states import JOB_STATES

HELP = [
    ("words", "jobs whose output holds them (one line, any case, 3+ characters)"),
    ('"a: b"', "quoted: the words exactly, even if they look like a token"),
    ("state:NAME", "in that state; repeat (or a,b) for any of several"),
    ("company:C", "of that company (slug or id)"),
    ("app:A", "of that application (name or id)"),
    ("template:N", "of that run template (id)"),
    ("since:DATE", "created at or after (2024-05-01, or a time; UTC)"),
    ("until:DATE", "created before"),
]
MIN_TEXT = 3


@dataclass
class JobSearch:
    """What a search asks for; ``company``/``app`` still by name (looked up on the way)."""

    params: dict[str, Any] = field(default_factory=dict)
    company: str | None = None
    app: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def text(self) -> str | None:
        value = self.params.get("text")
        return value if isinstance(value, str) else None

    def key(self) -> tuple[Any, ...]:
        """Equal for searches that list the same jobs."""
        return (sorted((k, str(v)) for k, v in self.params.items()), self.company, self.app)


def _when(value: str) -> str:
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


_WORDS = re.compile(r'"([^"]*)"?|(\S+)')  # a quoted phrase (its end quote may be missing)


def parse(typed: str) -> JobSearch:
    out = JobSearch()
    states: list[str] = []
    text: list[str] = []
    for quoted, word in _WORDS.findall(typed):
        if not word:  # quoted: text, whatever it looks like
            text.append(quoted)
            continue
        name, sep, value = word.partition(":")
        key = name.lower() if sep and value else ""
        if key == "state":
            for state in value.lower().split(","):
                if state in JOB_STATES:
                    states.append(state)
                else:
                    out.problems.append(f"no state {state!r}")
        elif key == "company":
            out.company = value
        elif key == "app":
            out.app = value
        elif key == "template" and value.isdigit():
            out.params["runtemplate_id"] = int(value)
        elif key in ("since", "until"):
            try:
                out.params[key] = _when(value)
            except ValueError:
                out.problems.append(f"{key}: {value!r} is not a date")
        else:
            text.append(word)
    if states:
        out.params["state"] = sorted(set(states))
    phrase = " ".join(text)
    if len(phrase) >= MIN_TEXT:
        out.params["text"] = phrase
    elif phrase:
        out.problems.append(f"text needs {MIN_TEXT}+ characters")
    return out


def matches(search: JobSearch, job: dict[str, Any], company_id: int | None,
            app_id: int | None) -> bool:
    """Whether a pushed job passes what can be checked without its output."""
    p = search.params
    if p.get("state") and job.get("state") not in p["state"]:
        return False
    if "runtemplate_id" in p and job.get("runtemplate_id") != p["runtemplate_id"]:
        return False
    if search.company is not None and job.get("company_id") != company_id:
        return False
    return search.app is None or job.get("app_id") == app_id
