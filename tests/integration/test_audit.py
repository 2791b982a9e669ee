"""The audit trail of changes made with the CLI (the socket's are in tests/e2e/test_access.py),
its filters, its append-only table, and a company's data export."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from multiflexid.core import Core
from tests.conftest import BACKENDS
from tests.support import sqlitedump

PROBE = "775ed801-2489-4981-bc14-d8a01cba1938"
SECRET = "Audit-Secret-Pw-4711"
NEW_SECRET = "Audit-New-Pw-4712"


@pytest.fixture
def changes(mfcli, examples_dir: Path) -> dict[str, int]:
    """A few changes of every kind, made with the CLI."""
    def ok(*args: str) -> Any:
        r = mfcli(*args, "--format", "json")
        assert r.code == 0, r.err
        return r.json

    ok("application", "import-json", "--file", str(examples_dir / "probe.multiflexi.app.json"))
    ok("application", "import-json", "--file", str(examples_dir / "probe.multiflexi.app.json"))
    ok("credential-type", "import-json", "--file", str(examples_dir / "credential-types"))
    acme = ok("company", "create", "--name", "Acme", "--slug", "acme")["id"]
    ok("company", "create", "--name", "Globex", "--slug", "globex")
    ok("company", "update", "--slug", "acme", "--email", "office@acme.example")
    rt = ok("runtemplate", "create", "--app", PROBE, "--company", "acme", "--name", "probe",
            "--config", f"PASSWORD={SECRET}", "--config", "FORCE_EXITCODE=1")["id"]
    ok("runtemplate", "set-config", "--id", str(rt), f"PASSWORD={NEW_SECRET}",
       "FORCE_EXITCODE=2")
    cred = ok("credential", "create", "--company", "acme", "--type", "Probe", "--name", "p",
              "--field", f"PASSWORD={SECRET}")["id"]
    job = ok("runtemplate", "run", "--id", str(rt))["id"]
    ok("job", "cancel", "--id", str(job))
    return {"acme": acme, "rt": rt, "cred": cred, "job": job}


def _entries(mfcli, *args: str) -> list[dict[str, Any]]:
    r = mfcli("audit", "list", "--format", "json", *args)
    assert r.code == 0, r.err
    return list(r.json)


def test_every_cli_change_is_recorded_with_who_and_the_diff(mfcli,
                                                           changes: dict[str, int]) -> None:
    entries = _entries(mfcli)
    me = entries[0]["user"]
    assert all(e["user"] == me and e["via"] == "cli" for e in entries)
    made = [(e["entity"], e["action"]) for e in reversed(entries)]
    assert made == [
        ("application", "created"),  # the second, identical import changed nothing
        ("company", "created"), ("company", "created"), ("company", "changed"),
        ("runtemplate", "created"), ("runtemplate", "changed"),
        ("credential", "created"), ("job", "run"), ("job", "cancel"),
    ]
    by = {(e["entity"], e["action"]): e for e in entries}
    assert by[("company", "changed")]["diff"] == {"email": [None, "office@acme.example"]}
    assert by[("runtemplate", "created")]["diff"]["config.PASSWORD"] == "set"
    assert by[("runtemplate", "created")]["diff"]["config.FORCE_EXITCODE"] == [None, "1"]
    assert by[("runtemplate", "changed")]["diff"] == {
        "config.PASSWORD": "changed", "config.FORCE_EXITCODE": ["1", "2"]}
    assert by[("credential", "created")]["diff"]["values.PASSWORD"] == "set"
    assert by[("job", "cancel")]["diff"] == {"state": ["scheduled", "cancelled"]}
    assert by[("runtemplate", "changed")]["company_id"] == changes["acme"]
    text_out = mfcli("audit", "list").out
    assert "config.PASSWORD: changed" in text_out and f"{me} via cli:" in text_out
    assert SECRET not in json.dumps(entries) and NEW_SECRET not in text_out


def test_under_sudo_the_invoking_user_is_recorded_too(
        mfcli, changes: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """sudo sets SUDO_USER to who invoked it (the real sudo: tests/e2e/test_access.py)."""
    me = _entries(mfcli)[0]["user"]
    monkeypatch.setenv("SUDO_USER", "alice")
    r = mfcli("company", "update", "--slug", "acme", "--name", "Acme a.s.")
    assert r.code == 0, r.err
    [entry] = _entries(mfcli, "--user", "alice")
    assert (entry["user"], entry["login_user"], entry["via"], entry["diff"]) == (
        me, "alice", "cli", {"name": ["Acme", "Acme a.s."]})
    assert f"{me} (as alice) via cli: company {changes['acme']} changed: name" in mfcli(
        "audit", "list", "--user", "alice").out
    monkeypatch.setenv("SUDO_USER", me)  # sudo to oneself: nobody else to name
    assert mfcli("company", "update", "--slug", "acme", "--name", "Acme").code == 0
    assert _entries(mfcli)[0]["login_user"] is None


def test_filters(mfcli, changes: dict[str, int]) -> None:
    assert {e["entity"] for e in _entries(mfcli, "--entity", "runtemplate")} == {"runtemplate"}
    ids = {e["entity_id"] for e in _entries(mfcli, "--entity", "job", "--id",
                                            str(changes["job"]))}
    assert ids == {changes["job"]}
    acme = _entries(mfcli, "--company", "acme")
    assert acme and all(e["company_id"] == changes["acme"] for e in acme)
    assert _entries(mfcli, "--user", "nobody-at-all") == []
    assert _entries(mfcli, "--since", "2999-01-01") == []
    r = mfcli("audit", "list", "--since", "yesterday")
    assert r.code == 1 and "--since: 'yesterday' is not an ISO 8601 time" in r.err


def test_no_secret_reaches_the_trail_in_the_raw_database(
        mfcli, mf_env, backend: str, request: pytest.FixtureRequest,
        changes: dict[str, int]) -> None:
    url = make_url(mf_env.db_url)
    if backend == "sqlite":
        conn = sqlite3.connect(str(url.database))
        try:
            dump = sqlitedump.dump(conn)
        finally:
            conn.close()
    else:
        cluster = request.getfixturevalue("pg_cluster")
        dump = subprocess.run(
            [str(cluster.bindir / "pg_dump"), "-h", str(cluster.root), "-U",
             cluster.superuser, "-d", str(url.database), "--inserts", "-t", "audit"],
            capture_output=True, text=True, check=True).stdout
    assert "INSERT INTO" in dump and "config.PASSWORD" in dump
    assert SECRET not in dump and NEW_SECRET not in dump


@pytest.fixture
def statements(mf_env: Any) -> Iterator[list[str]]:
    """Every SQL statement any engine of this process sends while the test runs (after
    its database was made and migrated)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def test_nothing_multiflexi_does_updates_or_deletes_the_trail(
        statements: list[str], changes: dict[str, int], mfcli) -> None:
    """What holds on SQLite, where no trigger stops the database's owner: every change of
    every kind (and reading the trail) only ever inserts into it."""
    assert mfcli("audit", "list").code == 0
    touching = [" ".join(st.split()) for st in statements if re.search(r"\baudit\b", st)]
    assert any(st.startswith("INSERT INTO audit") for st in touching), touching
    assert not [st for st in touching if re.match(r"(UPDATE|DELETE|TRUNCATE|DROP|ALTER)\b",
                                                  st, re.IGNORECASE)], touching


# PostgreSQL only: a trigger of the database itself; SQLite has none that stop its owner
# (what holds there is the test above).
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b == "postgresql"],
                         indirect=True)
def test_postgresql_refuses_to_change_or_delete_the_trail(
        core: Core, backend: str, changes: dict[str, int]) -> None:
    assert core.db.dialect == "postgresql"
    for statement in ("UPDATE audit SET summary = 'rewritten'", "DELETE FROM audit",
                      "TRUNCATE audit"):
        with pytest.raises(DBAPIError, match="audit trail is append-only"), \
                core.db.engine.begin() as conn:
            conn.execute(text(statement))
    with core.db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit WHERE summary = 'rewritten'")
                            ).scalar() == 0


def _deliveries_and_ticks(core: Core, changes: dict[str, int]) -> None:
    """A failed delivery of a WebHook with a secret, of acme's job, and a missed deadline
    tick of its template."""
    from datetime import UTC, datetime, timedelta

    from multiflexid.services.actions import encode_config
    from multiflexid.store.orm import ActionRun, Job, RunTemplateTick

    tick = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
    with core.db.session() as s:
        job = s.get(Job, changes["job"])
        assert job is not None
        s.add(ActionRun(job_id=job.id, company_id=job.company_id,
                        runtemplate_id=job.runtemplate_id, module="WebHook", trigger="failure",
                        config=encode_config("WebHook", {"uri": "https://hooks.example/x",
                                                         "secret": SECRET}, core.box),
                        state="failed", result="HTTP 500"))
        s.add(RunTemplateTick(runtemplate_id=job.runtemplate_id, company_id=job.company_id,
                              app_id=job.app_id, tick=tick, deadline=tick + timedelta(hours=1),
                              state="missed", missed_at=tick + timedelta(hours=1)))


def test_a_companys_data_on_request(mfcli, tmp_path: Path, core: Core,
                                    changes: dict[str, int]) -> None:
    _deliveries_and_ticks(core, changes)
    out = tmp_path / "acme.json"
    r = mfcli("company", "export", "--company", "acme", "--file", str(out))
    assert r.code == 0, r.err
    assert f"wrote {out}: company acme" in r.out
    doc = json.loads(out.read_text())
    assert doc["company"]["slug"] == "acme" and doc["secrets"] == "redacted"
    assert [t["name"] for t in doc["runtemplates"]] == ["probe"]
    assert doc["runtemplates"][0]["config"]["PASSWORD"] == "(secret)"
    assert doc["credentials"][0]["values"]["PASSWORD"] == "********"
    assert [j["id"] for j in doc["jobs"]] == [changes["job"]]
    assert doc["audit"] and all(e["company_id"] == changes["acme"] for e in doc["audit"])
    assert SECRET not in out.read_text() and NEW_SECRET not in out.read_text()
    [run] = doc["action_runs"]
    assert (run["job_id"], run["module"], run["state"], run["result"]) == (
        changes["job"], "WebHook", "failed", "HTTP 500")
    assert run["config"] == {"uri": "https://hooks.example/x", "secret": "(secret)"}
    [tick] = doc["deadline_ticks"]
    assert (tick["runtemplate_id"], tick["tick"], tick["state"], tick["missed_at"]) == (
        changes["rt"], "2026-01-05T06:00:00Z", "missed", "2026-01-05T07:00:00Z")
    assert "1 action_runs, 1 deadline_ticks" in r.out
    assert "globex" not in json.dumps(doc["runtemplates"] + doc["jobs"])
