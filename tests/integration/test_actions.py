"""Actions on a real database (SQLite and PostgreSQL): what a job's end writes to the
ledger (triggers, throttles, company defaults), config checks naming the field, secrets
absent from the raw database, the CLI's listings."""

from __future__ import annotations

import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from multiflexid.core import Core
from multiflexid.services import actions as svc
from multiflexid.services.jobs import create_job
from multiflexid.store.orm import ActionRun, RunTemplate
from tests.support import sqlitedump
from tests.support.factory import make_template, run_to_end

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _add(core: Core, rt_id: int, module: str, trigger: str, throttle: str | None = None,
         **values: object) -> int:
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        return svc.add_action(s, core.box, module=module, trigger=trigger, throttle=throttle,
                              values=dict(values), runtemplate=rt).id


def _run_job(core: Core, rt_id: int, code: int, at: datetime) -> int:
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        job_id = create_job(s, core.transitions, rt, schedule_type="adhoc",
                            launched_by="alice", after=at, box=core.box).id
    with core.db.session() as s:
        assert core.transitions.claim(s, at, "n1", 10) == [job_id]
    with core.db.session() as s:
        run_to_end(core, s, job_id, at, exitcode=code)
    return job_id


def _runs(core: Core) -> list[tuple[int, str, int | None]]:
    with core.db.read_session() as s:
        return [(r.job_id, r.trigger, r.action_id) for r in
                s.scalars(select(ActionRun).order_by(ActionRun.id))]


def test_ten_failures_in_a_row_notify_once_then_once_on_recovery(core: Core) -> None:
    rt = make_template(core)
    on_failure = _add(core, rt, "WebHook", "failure", uri="http://127.0.0.1:9/hook")
    every = _add(core, rt, "WebHook", "failure", "every", uri="http://127.0.0.1:9/all")
    recovery = _add(core, rt, "WebHook", "recovery", uri="http://127.0.0.1:9/ok")
    failed = [_run_job(core, rt, 1, T0 + timedelta(minutes=i)) for i in range(10)]
    ok = _run_job(core, rt, 0, T0 + timedelta(minutes=10))
    again = _run_job(core, rt, 0, T0 + timedelta(minutes=11))
    runs = _runs(core)
    assert [r for r in runs if r[2] == on_failure] == [(failed[0], "failure", on_failure)]
    assert [r[0] for r in runs if r[2] == every] == failed
    assert [r for r in runs if r[2] == recovery] == [(ok, "recovery", recovery)]
    assert not [r for r in runs if r[0] == again]
    # A new streak is told again.
    next_failure = _run_job(core, rt, 1, T0 + timedelta(minutes=12))
    assert (next_failure, "failure", on_failure) in _runs(core)


def test_a_retried_failure_is_not_a_failure_yet(core: Core) -> None:
    """With retries, the failure action fires on the last attempt only."""
    rt = make_template(core, max_attempts=2, retry_backoff="fixed", retry_min_gap=0)
    action = _add(core, rt, "WebHook", "failure", uri="http://127.0.0.1:9/hook")
    first = _run_job(core, rt, 1, T0)
    assert _runs(core) == []
    with core.db.read_session() as s:
        from multiflexid.store.orm import Job

        retry = s.scalar(select(Job.id).where(Job.retry_of_id == first))
    assert retry is not None
    with core.db.session() as s:
        assert core.transitions.claim(s, T0 + timedelta(minutes=1), "n1", 10) == [retry]
    with core.db.session() as s:
        run_to_end(core, s, retry, T0 + timedelta(minutes=1), exitcode=1)
    assert _runs(core) == [(retry, "failure", action)]


def test_company_defaults_apply_unless_the_template_opts_out(core: Core, mfcli) -> None:
    rt = make_template(core, name="one")
    other = make_template(core, name="two")
    r = mfcli("company", "action", "add", "--company", "acme", "--on", "any", "--module",
              "WebHook", "--set", "uri=http://127.0.0.1:9/all")
    assert r.code == 0, r.err
    company_action = int(r.out.strip())
    r = mfcli("runtemplate", "update", "--id", str(other), "--no-company-actions")
    assert r.code == 0, r.err
    one = _run_job(core, rt, 0, T0)
    _run_job(core, other, 0, T0)
    assert _runs(core) == [(one, "any", company_action)]
    r = mfcli("runtemplate", "action", "list", "--id", str(rt), "--format", "json")
    assert [(a["id"], a["scope"]) for a in r.json] == [(company_action, "company")]


def test_cancelling_a_queued_job_offline_writes_its_action_run(core: Core, mfcli) -> None:
    """The CLI's own paths end jobs too: their outbox rows are written the same way."""
    rt = make_template(core)
    action = _add(core, rt, "WebHook", "any", uri="http://127.0.0.1:9/hook")
    r = mfcli("runtemplate", "run", "--id", str(rt), "--format", "json")
    job_id = r.json["id"]
    r = mfcli("job", "cancel", "--id", str(job_id))
    assert r.code == 0, r.err
    assert _runs(core) == [(job_id, "any", action)]
    r = mfcli("job", "show", "--id", str(job_id))
    assert "action runs:" in r.out and "WebHook" in r.out and "pending" in r.out
    r = mfcli("action-run", "list", "--state", "pending", "--format", "json")
    assert [(x["job_id"], x["module"]) for x in r.json] == [(job_id, "WebHook")]


@pytest.mark.parametrize(("args", "message"), [
    (("--module", "Mailer"), "module: 'Mailer' is not one of WebHook"),
    (("--module", "WebHook"), "uri: required by WebHook"),
    (("--module", "WebHook", "--set", "uri=ftp://x"), "uri: 'ftp://x' is not an http"),
    (("--module", "WebHook", "--set", "uri=http://x", "--set", "timeout=soon"),
     "timeout: 'soon' is not a whole number"),
    (("--module", "WebHook", "--set", "uri=http://x", "--set", "colour=red"),
     "colour: not a key of WebHook"),
    (("--module", "WebHook", "--set", "uri=http://x", "--set", "header=nocolon"),
     "header: write a header as 'Name: value'"),
    (("--module", "Notify", "--set", "url=nosuch://x"), "url: not a valid Apprise URL"),
    (("--module", "Reschedule", "--set", "delay=-5"), "delay: must be between 0"),
    (("--module", "CustomCommand", "--set", "command=echo 'open"),
     "command: cannot split the command line"),
])
def test_bad_configuration_is_refused_naming_the_field(core: Core, mfcli,
                                                       args: tuple[str, ...],
                                                       message: str) -> None:
    rt = make_template(core)
    r = mfcli("runtemplate", "action", "add", "--id", str(rt), "--on", "failure", *args)
    assert r.code == 1
    assert message in r.err, r.err
    assert r.err.count("\n") == 1  # one line


def test_a_chain_to_another_companys_template_is_refused(core: Core, mfcli) -> None:
    mine = make_template(core, company="acme")
    theirs = make_template(core, company="globex", name="theirs")
    r = mfcli("runtemplate", "action", "add", "--id", str(mine), "--on", "success",
              "--module", "ChainRuntemplate", "--set", f"rtid={theirs}")
    assert r.code == 1
    assert f"rtid: run template {theirs} belongs to company globex" in r.err
    r = mfcli("company", "action", "add", "--company", "acme", "--on", "success",
              "--module", "ChainRuntemplate", "--set", f"rtid={theirs}")
    assert r.code == 1 and "rtid:" in r.err


SECRETS = {"webhook secret": "whsec-Very-Secret-1", "header": "Bearer hdr-Token-2",
           "apprise url": "smtp-Pass-Word-3", "github token": "ghp_Secret-Token-4"}


def test_action_secrets_are_absent_from_the_raw_database(
        core: Core, mfcli, mf_env, backend: str, request: pytest.FixtureRequest) -> None:
    rt = make_template(core)
    for args in (
        ("--module", "WebHook", "--set", "uri=http://127.0.0.1:9/hook",
         "--set", f"secret={SECRETS['webhook secret']}",
         "--set", f"header=Authorization: {SECRETS['header']}"),
        ("--module", "Notify", "--set",
         f"url=mailto://127.0.0.1:2525?user=mf&pass={SECRETS['apprise url']}"
         "&from=mf@example.com&to=a@example.com"),
        ("--module", "Github", "--set", f"token={SECRETS['github token']}",
         "--set", "repository=acme/tool"),
    ):
        r = mfcli("runtemplate", "action", "add", "--id", str(rt), "--on", "any", *args)
        assert r.code == 0, r.err
    job_id = _run_job(core, rt, 0, T0)  # the ledger copies the configuration
    assert len(_runs(core)) == 3
    listing = mfcli("runtemplate", "action", "list", "--id", str(rt), "--format", "json")
    shown = listing.out + mfcli("runtemplate", "action", "list", "--id", str(rt)).out
    shown += mfcli("action-run", "list", "--format", "json").out
    shown += mfcli("job", "show", "--id", str(job_id), "--format", "json").out
    for what, value in SECRETS.items():
        assert value not in shown, f"{what} shown in a listing"
    assert "mailto://********" in listing.out and "Authorization: ********" in listing.out
    url = make_url(mf_env.db_url)
    if backend == "sqlite":
        path = Path(str(url.database))
        conn = sqlite3.connect(path)  # fold the WAL in, then read the file as bytes
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dump = sqlitedump.dump(conn)
        conn.close()
        raw = path.read_bytes()
    else:
        cluster = request.getfixturevalue("pg_cluster")
        dump = subprocess.run(
            [str(cluster.bindir / "pg_dump"), "-h", str(cluster.root), "-U",
             cluster.superuser, "-d", str(url.database), "--inserts"],
            capture_output=True, text=True, check=True).stdout
        raw = dump.encode()
    assert "http://127.0.0.1:9/hook" in dump  # clear values are there: the dump is whole
    assert "gAAAAA" in dump  # Fernet tokens instead of the secrets
    for what, value in SECRETS.items():
        assert value.encode() not in raw, f"{what} in the raw database"
        assert value not in dump, f"{what} in the dump"


def _audit(mfcli) -> list[tuple[str, str, int | None]]:  # type: ignore[no-untyped-def]
    """(entity, action, entity id) of the audit trail's action entries, oldest first."""
    r = mfcli("audit", "list", "--format", "json")
    assert r.code == 0, r.err
    return [(e["entity"], e["action"], e["entity_id"]) for e in reversed(r.json)
            if e["entity"] == "action"]


def test_runtemplate_action_remove(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    rt = make_template(core, name="one")
    other = make_template(core, name="two")
    hook = _add(core, rt, "WebHook", "any", uri="http://127.0.0.1:9/hook")
    stop = _add(core, rt, "Stop", "failure")
    r = mfcli("company", "action", "add", "--company", "acme", "--on", "failure", "--module",
              "WebHook", "--set", "uri=http://127.0.0.1:9/company")
    company_action = int(r.out.strip())
    job = _run_job(core, rt, 1, T0)  # a run of each, pending in the ledger
    assert {r[2] for r in _runs(core)} == {hook, stop, company_action}
    r = mfcli("runtemplate", "action", "remove", "--id", str(rt), "--action", str(hook))
    assert (r.code, r.out) == (0, f"removed action {hook} of run template {rt}\n")
    listed = mfcli("runtemplate", "action", "list", "--id", str(rt), "--format", "json").json
    assert [a["id"] for a in listed] == [stop, company_action]
    # Its run stays in the ledger (and is still delivered: it holds its configuration).
    with core.db.read_session() as s:
        kept = s.scalars(select(ActionRun).where(ActionRun.job_id == job,
                                                 ActionRun.module == "WebHook",
                                                 ActionRun.trigger == "any")).all()
    assert [(k.action_id, k.state, k.config["uri"]) for k in kept] == [
        (None, "pending", "http://127.0.0.1:9/hook")]
    # Not one of this template's: refused, naming where it is.
    r = mfcli("runtemplate", "action", "remove", "--id", str(rt), "--action",
              str(company_action))
    assert r.code == 1 and (f"action {company_action} is not an action of run template {rt}; "
                            "it is of company") in r.err
    r = mfcli("runtemplate", "action", "remove", "--id", str(other), "--action", str(stop))
    assert r.code == 1 and f"it is of run template {rt}" in r.err
    r = mfcli("runtemplate", "action", "remove", "--id", str(rt), "--action", str(hook))
    assert r.code == 1 and f"no action with id {hook}" in r.err
    r = mfcli("runtemplate", "action", "remove", "--id", "999", "--action", str(stop))
    assert r.code == 1 and "999" in r.err
    assert _audit(mfcli)[-1] == ("action", "removed", hook)
    # A later failure no longer calls the removed one.
    _run_job(core, rt, 1, T0 + timedelta(minutes=1))
    assert hook not in {r[2] for r in _runs(core)}


def test_company_action_list_remove_and_test(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    from tests.support.servers import HttpRecorder, Reply

    rt = make_template(core)
    make_template(core, company="globex", name="theirs")
    own = _add(core, rt, "WebHook", "failure", uri="http://127.0.0.1:9/own")
    with HttpRecorder([Reply(200), Reply(503, {"error": "busy"})]) as server:
        r = mfcli("company", "action", "add", "--company", "acme", "--on", "failure",
                  "--module", "WebHook", "--set", f"uri={server.url()}", "--set",
                  "secret=co-Secret-77")
        hook = int(r.out.strip())
        r = mfcli("company", "action", "add", "--company", "acme", "--on", "recovery",
                  "--throttle", "every", "--module", "Stop")
        stop = int(r.out.strip())
        listed = mfcli("company", "action", "list", "--company", "acme", "--format", "json")
        assert [(a["id"], a["scope"], a["trigger"], a["throttle"], a["module"]) for a in
                listed.json] == [(hook, "company", "failure", "first", "WebHook"),
                                 (stop, "company", "recovery", "every", "Stop")]
        assert listed.json[0]["config"]["secret"] == "********"
        text = mfcli("company", "action", "list", "--company", "acme").out
        assert "WebHook" in text and "Stop" in text and "co-Secret-77" not in text
        assert [line.split()[0] for line in text.splitlines()[1:]] == [str(hook), str(stop)]
        assert mfcli("company", "action", "list", "--company", "globex",
                     "--format", "json").json == []
        # test: performs it once with a sample job, against the company's first template.
        r = mfcli("company", "action", "test", "--company", "acme", "--action", str(hook))
        assert r.code == 0, r.err
        assert r.out == (f"action {hook} (WebHook) tested with a sample job: ok: POST "
                         f"{server.url()}: HTTP 200\n")
        (post,) = server.received
        assert post.json["sample"] is True and post.json["runtemplate"]["id"] == rt
        assert post.json["company"]["slug"] == "acme"
        r = mfcli("company", "action", "test", "--company", "acme", "--action", str(hook))
        assert r.code == 1 and "HTTP 503" in r.out
        assert "(temporary: it would be retried)" in r.err
        r = mfcli("company", "action", "test", "--company", "acme", "--action", str(stop))
        assert r.code == 0 and "checked (not performed: it changes state)" in r.out
        assert "would disable run template" in r.out
        r = mfcli("company", "action", "test", "--company", "globex", "--action", str(hook))
        assert r.code == 1 and f"action {hook} is not a default action of company globex" \
            in r.err
        assert len(server.received) == 2
    r = mfcli("company", "action", "remove", "--company", "acme", "--action", str(own))
    assert r.code == 1 and f"action {own} is not a default action of company acme" in r.err
    r = mfcli("company", "action", "remove", "--company", "acme", "--action", str(hook))
    assert (r.code, r.out) == (0, f"removed action {hook} of acme\n")
    assert [a["id"] for a in mfcli("company", "action", "list", "--company", "acme",
                                   "--format", "json").json] == [stop]
    assert [a["id"] for a in mfcli("runtemplate", "action", "list", "--id", str(rt),
                                   "--format", "json").json] == [own, stop]
    assert _audit(mfcli)[-1] == ("action", "removed", hook)


def test_a_notify_url_apprise_no_longer_loads_fails_at_once(core: Core) -> None:
    """Its URL was checked when the action was added; an Apprise upgraded since may no
    longer load its scheme. Retrying cannot help: failed at the first attempt, saying so
    (and not the URL's secret part). Stand-in for the upgrade: the ledger row's URL is
    made one that this Apprise does not know."""
    from sqlalchemy import update

    from multiflexid.store.orm import ACTION_RUNS
    from tests.support.actions import deliver

    rt = make_template(core)
    _add(core, rt, "Notify", "failure",
         url="mailto://127.0.0.1:9?from=mf@example.com&to=a@example.com")
    _run_job(core, rt, 1, T0)
    retired = svc.encode_config("Notify", {"url": ["retired://Sec-Token-5@host/x"]}, core.box)
    with core.db.session() as s:
        s.execute(update(ACTION_RUNS).values(config=retired))
    deliver(core)
    with core.db.read_session() as s:
        (run,) = s.scalars(select(ActionRun)).all()
    assert (run.state, run.attempts) == ("failed", 1)
    assert run.result == ("not sent: this Apprise does not load 1 of the URLs (retired://...): "
                          "fix the action's url (`action modules`, "
                          "https://github.com/caronc/apprise/wiki)")
