"""Actions performed by the real multiflexid (SQLite and PostgreSQL) against real servers
the tests start: a local HTTP server receiving WebHook posts, an SMTP server (aiosmtpd)
receiving Notify's mail, stand-ins answering as the GitHub and Redmine APIs do (local
HTTP servers, not the real services: those cannot be reached from here)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.factory import make_template, overdue_template, shell_app
from tests.support.servers import HttpRecorder, Received, Reply, smtp_server

FAST = {"MULTIFLEXI_ACTION_RETRY_SECONDS": "0.2", "MULTIFLEXI_ACTION_MAX_ATTEMPTS": "3"}


@pytest.fixture
def daemon(mf_env: Env, core: Core, tmp_path: Path) -> Iterator[DaemonProcess]:
    core.ensure_schema()
    with running_daemon(mf_env.vars(), tmp_path, extra_env=FAST) as d:
        yield d


def coded_app() -> dict[str, Any]:
    doc = shell_app("Importer")
    doc["exitCodes"] = {"3": {"description": "Bank refused the login", "severity": "error"}}
    doc["artifacts"] = [{"name": "statement", "path": r"statement\.xml", "type": "xml"}]
    return doc


def add(mfcli: Any, rt_id: int, *args: str) -> int:
    r = mfcli("runtemplate", "action", "add", "--id", str(rt_id), *args)
    assert r.code == 0, r.err
    return int(r.out.strip())


def run(d: DaemonProcess, rt_id: int, **env: str) -> dict[str, Any]:
    return d.wait_job(d.call("runtemplate.run", id=rt_id, env=env)["id"])


def wait_runs(d: DaemonProcess, job_id: int, states: tuple[str, ...] = (
        "succeeded", "failed", "gave_up"), count: int = 1, timeout: float = 30.0
        ) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    runs: list[dict[str, Any]] = []
    while time.monotonic() < end:
        runs = d.call("job.get", id=job_id)["action_runs"]
        if len(runs) >= count and all(r["state"] in states for r in runs):
            return runs
        time.sleep(0.1)
    raise AssertionError(f"action runs of job {job_id}: {runs}\n{d.log()}")


def test_webhook_signed_one_503_then_delivered(core: Core, daemon: DaemonProcess,
                                               mfcli: Any) -> None:
    rt = make_template(core, app_doc=coded_app(), config={
        "SCRIPT": "echo downloading; echo '<x/>' > statement.xml; echo 'login refused' >&2;"
                  " exit 3"})
    with HttpRecorder([Reply(503, {"error": "busy"}), Reply(200)]) as server:
        action = add(mfcli, rt, "--on", "failure", "--module", "WebHook",
                     "--set", f"uri={server.url()}", "--set", "secret=hook-key-123",
                     "--set", "header=X-Tenant: acme-42")
        job = run(daemon, rt)
        assert job["state"] == "failed"
        (done,) = wait_runs(daemon, job["id"])
        posts = server.wait_for(2)
    assert (done["state"], done["attempts"], done["status_code"]) == ("succeeded", 2, 200)
    first, second = posts
    # The same delivery attempted twice: only the attempt number differs.
    assert (first.json["action"]["attempt"], second.json["action"]["attempt"]) == (1, 2)
    assert {**first.json, "action": None} == {**second.json, "action": None}
    for post in posts:
        expected = "sha256=" + hmac.new(b"hook-key-123", post.body, hashlib.sha256).hexdigest()
        assert post.headers["x-multiflexi-signature"] == expected
        assert post.headers["idempotency-key"] == f"{job['id']}-{action}"
        assert post.headers["x-tenant"] == "acme-42"
        assert post.headers["content-type"] == "application/json"
    p = second.json
    assert p["event"] == "job.ended" and p["trigger"] == "failure" and not p["sample"]
    assert p["job"]["id"] == job["id"] and p["job"]["state"] == "failed"
    assert p["job"]["exitcode"] == 3
    assert p["job"]["exit_meaning"] == {"description": "Bank refused the login",
                                        "severity": "error"}
    assert p["job"]["node"] == "test-node" and p["job"]["duration_seconds"] is not None
    assert p["company"]["slug"] == "acme" and p["runtemplate"]["id"] == rt
    assert p["application"]["name"] == "Importer"
    assert "login refused" in p["output_tail"] and "downloading" in p["output_tail"]
    assert [(a["filename"], a["size"]) for a in p["artifacts"]] == [("statement.xml", 5)]
    assert p["action"]["module"] == "WebHook" and p["action"]["id"] == action
    assert "hook-key-123" not in daemon.log()


def test_webhook_gives_up_after_the_limit_and_is_retried_by_hand(
        core: Core, daemon: DaemonProcess, mfcli: Any) -> None:
    healthy = False

    def reply(_got: Received) -> Reply:
        return Reply(200) if healthy else Reply(503, {"error": "down for maintenance"})

    rt = make_template(core, config={"SCRIPT": "exit 1"})
    with HttpRecorder(reply) as server:
        add(mfcli, rt, "--on", "failure", "--module", "WebHook", "--set",
            f"uri={server.url()}")
        job = run(daemon, rt)
        (given_up,) = wait_runs(daemon, job["id"])
        assert len(server.received) == 3
        assert given_up["state"] == "gave_up" and given_up["attempts"] == 3
        assert given_up["result"] == "POST " + server.url() + ": HTTP 503: " \
            '{"error": "down for maintenance"}'
        assert daemon.call("job.get", id=job["id"])["state"] == "failed"  # unchanged
        r = mfcli("action-run", "list", "--state", "gave_up")
        assert r.code == 0 and "WebHook" in r.out and "HTTP 503" in r.out
        healthy = True
        r = mfcli("action-run", "retry", "--id", str(given_up["id"]))
        assert r.code == 0, r.err
        (done,) = wait_runs(daemon, job["id"], ("succeeded",))
        assert len(server.received) == 4
    assert done["status_code"] == 200
    again = mfcli("action-run", "retry", "--id", str(given_up["id"]))
    assert again.code == 1 and "is succeeded" in again.err
    # Who asked for the retry is on the audit trail (the refused second one changed nothing).
    trail = json.loads(mfcli("--format", "json", "audit", "list", "--entity",
                             "action_run").out)
    assert [(e["action"], e["entity_id"], e["via"], e["diff"]) for e in trail] == [
        ("retry", given_up["id"], "cli", {"state": ["gave_up", "pending"]})]
    assert f"WebHook for job {job['id']}" in trail[0]["summary"]


def test_a_server_that_hangs_hits_the_timeout(core: Core, daemon: DaemonProcess,
                                              mfcli: Any) -> None:
    rt = make_template(core, config={"SCRIPT": "exit 1"})
    with HttpRecorder([Reply(200, delay=8)]) as server:
        add(mfcli, rt, "--on", "failure", "--module", "WebHook", "--set",
            f"uri={server.url()}", "--set", "timeout=1")
        job = run(daemon, rt)
        started = time.monotonic()
        (run_,) = wait_runs(daemon, job["id"], timeout=20)
        took = time.monotonic() - started
    assert run_["state"] == "gave_up"
    assert run_["result"] == f"POST {server.url()}: no answer within 1 s"
    assert took < 8  # three attempts of 1 s each, not three of 8


def test_notify_mail_reaches_an_smtp_server(core: Core, daemon: DaemonProcess,
                                            mfcli: Any) -> None:
    rt = make_template(core, app_doc=coded_app(), name="bank import", config={
        "SCRIPT": "echo 'fetched 0 statements'; echo 'login refused' >&2; exit 3"})
    with smtp_server() as (port, mails):
        add(mfcli, rt, "--on", "failure", "--module", "Notify", "--set",
            f"url=mailto://127.0.0.1:{port}?from=multiflexi@example.com"
            "&to=admin@example.com&secure=no")
        job = run(daemon, rt)
        (done,) = wait_runs(daemon, job["id"])
        assert done["state"] == "succeeded", done
        assert len(mails) == 1
    mail = mails[0]
    assert mail.rcpt_tos == ["admin@example.com"]
    subject = mail.message["Subject"]
    assert subject == "[MultiFlexi] acme · bank import: failed (exit 3: Bank refused the login)"
    body = mail.message.get_body(("plain",)).get_content()
    assert "Company:      Acme (acme)" in body and "Template:     bank import" in body
    assert "login refused" in body and "fetched 0 statements" in body
    assert done["result"] == "sent to 1 service(s) (mailto)"


def test_an_smtp_4xx_is_retried_then_given_up(core: Core, daemon: DaemonProcess,
                                              mfcli: Any) -> None:
    rt = make_template(core, config={"SCRIPT": "exit 1"})
    with smtp_server("451 4.3.0 try again later") as (port, mails):
        add(mfcli, rt, "--on", "failure", "--module", "Notify", "--set",
            f"url=mailto://127.0.0.1:{port}?from=mf@example.com&to=a@example.com&secure=no")
        job = run(daemon, rt)
        (done,) = wait_runs(daemon, job["id"])
    assert (done["state"], done["attempts"], mails) == ("gave_up", 3, [])
    assert done["result"].startswith("not sent (mailto):")


def test_a_timed_out_job_fires_failure_actions(core: Core, daemon: DaemonProcess,
                                              mfcli: Any) -> None:
    rt = make_template(core, timeout=1, config={"SCRIPT": "echo started; sleep 30"})
    with HttpRecorder([Reply(200)]) as server:
        failure = add(mfcli, rt, "--on", "failure", "--module", "WebHook", "--set",
                      f"uri={server.url('/failure')}")
        add(mfcli, rt, "--on", "success", "--module", "WebHook", "--set",
            f"uri={server.url('/success')}")
        job = daemon.wait_job(daemon.call("runtemplate.run", id=rt)["id"], timeout=40)
        assert job["state"] == "timed_out"
        (done,) = wait_runs(daemon, job["id"])
        (post,) = server.received
    assert (done["action_id"], done["trigger"], done["state"]) == (failure, "failure",
                                                                   "succeeded")
    assert post.path == "/failure"
    assert (post.json["job"]["state"], post.json["job"]["id"]) == ("timed_out", job["id"])
    assert "timed out after 1 s" in post.json["job"]["reason"]
    assert "started" in post.json["output_tail"]


def test_a_job_lost_with_its_daemon_fires_failure_actions_after_the_restart(
        mf_env: Env, core: Core, tmp_path: Path, mfcli: Any) -> None:
    """kill -9 of the daemon while the job runs: the next daemon finds it ``lost`` (its
    result is unknown) — a failure — and delivers the failure action."""
    core.ensure_schema()
    rt = make_template(core, config={"SCRIPT": "echo working; sleep 60"})
    with HttpRecorder([Reply(200)]) as server:
        failure = add(mfcli, rt, "--on", "failure", "--module", "WebHook", "--set",
                      f"uri={server.url()}")
        d = DaemonProcess(mf_env.vars(), tmp_path, extra_env=FAST).start()
        job = d.call("runtemplate.run", id=rt)
        pid = d.wait_job(job["id"], states=("running",))["pid"]
        d.kill9()
        try:
            with running_daemon(mf_env.vars(), tmp_path, extra_env=FAST) as d2:
                (done,) = wait_runs(d2, job["id"])
                lost = d2.call("job.get", id=job["id"])
        finally:  # the orphaned job: its own process group (not a pkill by name)
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        (post,) = server.received
    assert lost["state"] == "lost"
    assert (done["action_id"], done["trigger"], done["state"]) == (failure, "failure",
                                                                   "succeeded")
    assert post.json["job"]["state"] == "lost" and post.json["job"]["id"] == job["id"]
    assert "stopped while the job ran" in post.json["job"]["reason"]


def test_kill9_between_the_end_and_the_delivery(mf_env: Env, core: Core, tmp_path: Path,
                                                mfcli: Any) -> None:
    """The daemon dies while the webhook is under way: after the restart it is delivered,
    with the same idempotency key — a receiver sees one delivery per key."""
    core.ensure_schema()
    hang = True

    def reply(_got: Received) -> Reply:
        return Reply(200, delay=30) if hang else Reply(200)

    rt = make_template(core, config={"SCRIPT": "echo done"})
    with HttpRecorder(reply) as server:
        action = add(mfcli, rt, "--on", "success", "--module", "WebHook", "--set",
                     f"uri={server.url()}", "--set", "timeout=60")
        d = DaemonProcess(mf_env.vars(), tmp_path, extra_env=FAST).start()
        job = run(d, rt)
        server.wait_for(1)  # the POST is under way, not answered
        d.kill9()
        hang = False
        d2 = DaemonProcess(mf_env.vars(), tmp_path, extra_env=FAST).start()
        try:
            (done,) = wait_runs(d2, job["id"])
        finally:
            d2.stop()
        keys = {p.headers["idempotency-key"] for p in server.received}
    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert keys == {f"{job['id']}-{action}"}
    assert len(server.received) == 2
    r = mfcli("action-run", "list", "--job", str(job["id"]), "--format", "json")
    assert [x["state"] for x in r.json] == ["succeeded"]


def test_a_deadline_missed_while_no_daemon_ran_is_told_once_when_it_starts(
        mf_env: Env, core: Core, tmp_path: Path, mfcli: Any) -> None:
    """A tick came and its deadline passed while no daemon ran: the daemon that starts
    records the miss and delivers the ``missed`` webhook; the next start does not again."""
    core.ensure_schema()
    rt = overdue_template(core, config={"SCRIPT": "exit 1"})  # its catch-up run fails too
    with HttpRecorder([Reply(200)]) as server:
        action = add(mfcli, rt, "--on", "missed", "--module", "WebHook", "--set",
                     f"uri={server.url()}")
        with running_daemon(mf_env.vars(), tmp_path, extra_env=FAST) as d:
            (post,) = server.wait_for(1)
            end = time.monotonic() + 30
            while d.call("action_run.list", runtemplate_id=rt)["items"][0]["state"] \
                    != "succeeded" and time.monotonic() < end:
                time.sleep(0.1)
        with running_daemon(mf_env.vars(), tmp_path, extra_env=FAST) as d:
            time.sleep(3)  # its tracker sweeps and its worker claims at once
            runs = d.call("action_run.list", runtemplate_id=rt)["items"]
        received = len(server.received)
    assert received == 1
    assert [(r["action_id"], r["trigger"], r["state"], r["job_id"]) for r in runs] == [
        (action, "missed", "succeeded", None)]
    assert post.headers["idempotency-key"] == f"tick-{runs[0]['tick_id']}-{action}"
    assert post.json["event"] == "tick.missed" and post.json["runtemplate"]["id"] == rt
    assert post.json["tick"]["outcome"] == "missed"


def test_a_chain_hands_the_artifact_to_the_next_template(core: Core, daemon: DaemonProcess,
                                                         mfcli: Any) -> None:
    download = make_template(core, app_doc=coded_app(), name="download", config={
        "SCRIPT": "echo '<statement id=\"7\"/>' > statement.xml"})
    importer = make_template(core, name="import", config={
        "SCRIPT": 'echo "previous $MULTIFLEXI_PREVIOUS_JOB_ID"; '
                  'cat "$MULTIFLEXI_PREVIOUS_ARTIFACTS/statement.xml"'})
    add(mfcli, download, "--on", "success", "--module", "ChainRuntemplate", "--set",
        f"rtid={importer}")
    first = run(daemon, download)
    assert first["state"] == "succeeded"
    (chained,) = wait_runs(daemon, first["id"])
    assert chained["state"] == "succeeded", chained
    jobs = daemon.call("job.list", runtemplate_id=importer)["items"]
    assert len(jobs) == 1 and jobs[0]["schedule_type"] == "chained"
    second = daemon.wait_job(jobs[0]["id"])
    assert second["state"] == "succeeded"
    assert daemon.output(second["id"]) == (f"previous {first['id']}\n"
                                           '<statement id="7"/>\n')
    assert second["artifacts"] == []  # what it was handed is not its own artifact


def test_a_chain_cycle_stops_at_the_depth_limit(core: Core, daemon: DaemonProcess,
                                                mfcli: Any) -> None:
    rt = make_template(core, name="loop", config={"SCRIPT": "true"})
    add(mfcli, rt, "--on", "success", "--module", "ChainRuntemplate", "--set", f"rtid={rt}")
    first = run(daemon, rt)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        runs = mfcli("action-run", "list", "--state", "failed", "--format", "json").json
        if runs:
            break
        time.sleep(0.2)
    assert len(runs) == 1, runs
    assert "chain depth limit 10 reached" in runs[0]["result"]
    jobs = daemon.call("job.list", runtemplate_id=rt, limit=100)["items"]
    assert len(jobs) == 11 and jobs[-1]["id"] == first["id"]


def test_stop_disables_the_template_with_its_reason(core: Core, daemon: DaemonProcess,
                                                    mfcli: Any) -> None:
    rt = make_template(core, interv="h", config={"SCRIPT": "exit 1"})
    add(mfcli, rt, "--on", "failure", "--module", "Stop")
    job = run(daemon, rt)
    wait_runs(daemon, job["id"])
    view = daemon.call("runtemplate.get", id=rt)
    assert view["active"] is False and view["next_schedule"] is None
    assert view["inactive_reason"] == f"stopped by a Stop action after job {job['id']} failed"
    listing = mfcli("runtemplate", "list")
    assert f"no: stopped by a Stop action after job {job['id']} failed" in listing.out
    r = mfcli("runtemplate", "update", "--id", str(rt), "--active")
    assert r.code == 0 and daemon.call("runtemplate.get", id=rt)["inactive_reason"] is None


def test_custom_command_gets_the_summary(core: Core, daemon: DaemonProcess, mfcli: Any,
                                         tmp_path: Path) -> None:
    out = tmp_path / "cmd.out"
    rt = make_template(core, config={"SCRIPT": "exit 1"})
    script = (f'echo "$MULTIFLEXI_JOB_ID $MULTIFLEXI_JOB_STATE $MULTIFLEXI_COMPANY_SLUG '
              f'$MULTIFLEXI_TRIGGER" > {out}; cat >> {out}; echo handled')
    add(mfcli, rt, "--on", "failure", "--module", "CustomCommand", "--set",
        f"command=sh -c '{script}'")
    job = run(daemon, rt)
    (done,) = wait_runs(daemon, job["id"])
    assert done["state"] == "succeeded" and done["result"] == "sh exited 0: handled"
    first, rest = out.read_text().split("\n", 1)
    assert first == f"{job['id']} failed acme failure"
    assert f'"id": {job["id"]}' in rest


def test_issues_on_github_and_redmine_stand_ins(core: Core, daemon: DaemonProcess,
                                                mfcli: Any) -> None:
    """Local servers answering as the GitHub and Redmine REST APIs do (stand-ins)."""
    def api(got: Received) -> Reply:
        if got.path == "/repos/acme/importer/issues":
            return Reply(201, {"number": 7, "html_url": "https://github.test/acme/7"})
        if got.path == "/issues.json":
            return Reply(201, {"issue": {"id": 12}})
        return Reply(404, {"message": "Not Found"})

    rt = make_template(core, config={"SCRIPT": "echo broke; exit 1"})
    with HttpRecorder(api) as server:
        add(mfcli, rt, "--on", "failure", "--module", "Github", "--set", "token=ghp-tok-1",
            "--set", "repository=acme/importer", "--set", f"api_url={server.url('')}")
        add(mfcli, rt, "--on", "failure", "--module", "RedmineIssue", "--set",
            f"url={server.url('')}", "--set", "token=rm-key-2", "--set", "project_id=ops")
        job = run(daemon, rt)
        runs = wait_runs(daemon, job["id"], count=2)
        by_path = {p.path: p for p in server.received}
    assert sorted(r["result"] for r in runs) == [
        "issue #12 opened: " + server.url("") + "/issues/12",
        "issue #7 opened in acme/importer: https://github.test/acme/7"]
    gh = by_path["/repos/acme/importer/issues"]
    assert gh.headers["authorization"] == "Bearer ghp-tok-1"
    assert gh.json["title"] == "[MultiFlexi] acme · tpl: failed (exit 1)"
    assert "broke" in gh.json["body"]
    rm = by_path["/issues.json"]
    assert rm.headers["x-redmine-api-key"] == "rm-key-2"
    assert rm.json["issue"]["project_id"] == "ops" and "broke" in rm.json["issue"]["description"]
    shown = mfcli("action-run", "list").out + daemon.log()
    assert "ghp-tok-1" not in shown and "rm-key-2" not in shown


def test_action_test_sends_a_sample(core: Core, mfcli: Any) -> None:
    """`action test` (no daemon needed) performs it once with a sample job."""
    rt = make_template(core)
    with HttpRecorder([Reply(200)]) as server, smtp_server() as (port, mails):
        hook = add(mfcli, rt, "--on", "failure", "--module", "WebHook", "--set",
                   f"uri={server.url()}")
        mail = add(mfcli, rt, "--on", "success", "--module", "Notify", "--set",
                   f"url=mailto://127.0.0.1:{port}?from=mf@example.com&to=a@example.com"
                   "&secure=no")
        r = mfcli("runtemplate", "action", "test", "--id", str(rt), "--action", str(hook))
        assert r.code == 0, r.err
        assert r.out == (f"action {hook} (WebHook) tested with a sample job: ok: POST "
                         f"{server.url()}: HTTP 200\n")
        (post,) = server.received
        assert post.json["sample"] is True and post.json["job"]["state"] == "failed"
        r = mfcli("runtemplate", "action", "test", "--id", str(rt), "--action", str(mail))
        assert r.code == 0, r.err
        assert len(mails) == 1 and "[test]" in mails[0].message["Subject"]
    r = mfcli("runtemplate", "action", "test", "--id", str(rt), "--action", str(hook))
    assert r.code == 1 and "cannot connect" in r.out
