"""A job's whole story in the real journal: ``journalctl MULTIFLEXI_JOB_ID=N``.

journald runs for real in a private mount namespace (tests/support/journal_ns.py); the
machine's own journal is not touched. Needs root (unshare, mount).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from multiflexid.core import Core
from multiflexid.domain.config import MASK
from tests.conftest import Env
from tests.support.factory import make_template, overdue_template, refuse

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.root_only


def _in_private_journal(mf_env: Env, tmp_path: Path, rt_id: int, **extra: Any
                        ) -> dict[str, Any]:
    """Run one job of ``rt_id`` by a daemon logging to a journald of its own; what the
    scenario saw (tests/support/journal_ns.py)."""
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({
        "env": mf_env.vars(), "workdir": str(tmp_path), "runtemplate_id": rt_id, **extra,
    }))
    proc = subprocess.run(
        ["unshare", "--mount", sys.executable, "-m", "tests.support.journal_ns", str(scenario)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(json.loads(proc.stdout))


def test_journalctl_tells_the_jobs_whole_story(mf_env: Env, core: Core, tmp_path: Path) -> None:
    rt_id = make_template(core, company="acme", name="story",
                          config={"SCRIPT": "echo first line; echo second line >&2; exit 4"})
    result = _in_private_journal(mf_env, tmp_path, rt_id)
    job = result["job"]
    entries = result["entries"]
    messages = [e["MESSAGE"] for e in entries]
    assert job["state"] == "failed" and job["exitcode"] == 4
    assert any(m.startswith("job started: sh -c") for m in messages), messages
    assert "first line" in messages and "second line" in messages
    assert any("job ended: failed, exit code 4" in m for m in messages), messages
    for e in entries:  # every entry carries the job's context as fields
        assert e["MULTIFLEXI_JOB_ID"] == str(job["id"])
        assert e["MULTIFLEXI_RUNTEMPLATE_ID"] == str(rt_id)
        assert e["MULTIFLEXI_COMPANY"] == "acme"
        assert e["MULTIFLEXI_APP"] == "Shell"
    stderr_line = next(e for e in entries if e["MESSAGE"] == "second line")
    assert stderr_line["MULTIFLEXI_STREAM"] == "stderr"
    assert stderr_line["PRIORITY"] == "4"  # warning
    end = next(e for e in entries if "job ended" in e["MESSAGE"])
    assert end["MULTIFLEXI_EXIT_CODE"] == "4"
    # Who ran it is in the audit trail, and in the journal as an audit entry.
    audit = [e for e in entries if e.get("MULTIFLEXI_AUDIT") == "1"]
    assert len(audit) == 1, [e["MESSAGE"] for e in entries]
    assert audit[0]["MULTIFLEXI_AUDIT_USER"] == "root"
    assert audit[0]["MULTIFLEXI_AUDIT_ENTITY"] == "job"
    assert audit[0]["MESSAGE"].startswith(f"audit: job {job['id']} of run template {rt_id}")


def test_a_secret_split_by_chunk_cuts_and_pauses_is_masked_everywhere(
        mf_env: Env, core: Core, tmp_path: Path) -> None:
    """The secret reaches the output in pieces: ``hun`` before a pause longer than the
    partial-line wait, and ``hun`` at the 64 KiB cut of a long line. Neither the stored
    output, nor the journal, nor the live stream a TUI follows has it in clear."""
    script = ("printf 'pass: hun'; sleep 1; printf 'ter22\\n'; "
              "head -c 65533 /dev/zero | tr '\\0' x; printf hun; sleep 0.3; "
              "printf 'ter22 end\\n'")
    rt_id = make_template(core, company="acme", name="split", config={"SCRIPT": script})
    result = _in_private_journal(mf_env, tmp_path, rt_id, watch=True,
                                 env_overrides={"TOKEN": "hunter22"})
    assert result["job"]["state"] == "succeeded", result["daemon_log"]
    masked = f"pass: {MASK}\n" + "x" * 65533 + f"{MASK} end\n"
    assert result["output"] == masked  # job.output, through the socket
    assert result["cli_output"] == masked  # multiflexi-cli job output
    assert _live(result) == masked
    assert _journaled(result) == masked.replace("\n", "")


def _live(result: dict[str, Any]) -> str:
    """What a TUI following the job was sent, in order."""
    return "".join(c["data"] for c in sorted(result["live"], key=lambda c: c["seq"]))


def _journaled(result: dict[str, Any]) -> str:
    """The job's output lines in the journal (a line a partial flush cut is two entries)."""
    return "".join(e["MESSAGE"] for e in result["entries"] if e.get("MULTIFLEXI_STREAM"))


def test_secrets_the_app_does_not_declare_are_masked_everywhere(
        mf_env: Env, core: Core, tmp_path: Path) -> None:
    """Values of keys the app does not declare are secret when their name says so (in the
    template's configuration and in a run's overrides) or when marked so (``--secret
    KEY=VALUE``: ``secret_keys``); none reaches the stored output, `job output`, the
    journal or the live stream in clear."""
    script = ('echo "bank=$BANK_PASSWORD shop=$SHOP_API_KEY marked=$PLAIN_LOOKING '
              'run=$RUN_TOKEN once=$ONE_OFF"')
    rt_id = make_template(core, company="acme", name="undeclared",
                          config={"SCRIPT": script, "BANK_PASSWORD": "bankpw-99321",
                                  "SHOP_API_KEY": "shopkey-71828",
                                  "PLAIN_LOOKING": "marked-55210"},
                          secret=["PLAIN_LOOKING"])
    result = _in_private_journal(mf_env, tmp_path, rt_id, watch=True,
                                 env_overrides={"RUN_TOKEN": "runtok-88120",
                                                "ONE_OFF": "oneoff-44321"},
                                 secret_keys=["ONE_OFF"])
    assert result["job"]["state"] == "succeeded", result["daemon_log"]
    masked = f"bank={MASK} shop={MASK} marked={MASK} run={MASK} once={MASK}\n"
    assert result["output"] == masked
    assert result["cli_output"] == masked
    assert _live(result) == masked
    assert _journaled(result) == masked.rstrip("\n")
    everything = json.dumps(result["entries"]) + json.dumps(result["job"])
    for value in ("bankpw-99321", "shopkey-71828", "marked-55210", "runtok-88120",
                  "oneoff-44321"):
        assert value not in everything, value


def test_an_internal_errors_id_finds_its_traceback_in_the_journal(
        mf_env: Env, core: Core, tmp_path: Path) -> None:
    """A client told of an internal error gets an id; ``journalctl MULTIFLEXI_ERROR_ID=<id>``
    finds the traceback (once, with the statement the client was not shown), and the same
    bug again under the same id in one line."""
    rt_id = make_template(core, name="secret-name-in-params")
    refuse(core, "UPDATE", "runtemplate")
    result = _in_private_journal(mf_env, tmp_path, rt_id, failing_call={
        "method": "runtemplate.set_active", "params": {"id": rt_id, "active": False}})
    first, again = result["replies"]
    assert first["name"] == again["name"] == "internal_error", result["replies"]
    eid = first["data"]["error_id"]
    assert again["data"]["error_id"] == eid
    assert f"journalctl MULTIFLEXI_ERROR_ID={eid}" in first["message"]
    assert "UPDATE" not in first["message"] and "secret-name" not in first["message"]
    entries = result["entries"]
    assert len(entries) == 2, result["daemon_log"]
    traceback, repeat = entries
    error = "IntegrityError" if core.db.is_sqlite else "RaiseException"  # the driver's
    assert traceback["MESSAGE"].startswith(
        f"method runtemplate.set_active: {error}: boom (error id {eid})\nTraceback"
    ), traceback["MESSAGE"]
    assert "UPDATE runtemplate" in traceback["MESSAGE"]
    assert traceback["PRIORITY"] == "3" and traceback["SYSLOG_IDENTIFIER"] == "multiflexid"
    assert "Traceback" not in repeat["MESSAGE"] and "seen 2 times" in repeat["MESSAGE"]


def test_action_runs_are_in_the_journal_with_their_job_and_module(
        mf_env: Env, core: Core, tmp_path: Path, mfcli: Any) -> None:
    """``journalctl MULTIFLEXI_ACTION=CustomCommand MULTIFLEXI_JOB_ID=N`` finds the action
    run a job's end called for; a tick's missed deadline has ``MULTIFLEXI_TICK_ID``."""
    rt_id = make_template(core, company="acme", name="told",
                          config={"SCRIPT": "echo working; exit 2"})
    overdue = overdue_template(core, company="acme", config={"SCRIPT": "exit 1"})
    for rt, trigger in ((rt_id, "failure"), (overdue, "missed")):
        r = mfcli("runtemplate", "action", "add", "--id", str(rt), "--on", trigger,
                  "--module", "CustomCommand", "--set", "command=sh -c 'echo told'")
        assert r.code == 0, r.err
    result = _in_private_journal(
        mf_env, tmp_path, rt_id, action_runs={str(rt_id): 1, str(overdue): 1},
        queries={"action": ["MULTIFLEXI_ACTION=CustomCommand", "MULTIFLEXI_JOB_ID={job}"],
                 "tick": ["MULTIFLEXI_ACTION=CustomCommand",
                          f"MULTIFLEXI_RUNTEMPLATE_ID={overdue}"]})
    job = result["job"]
    assert job["state"] == "failed", result["daemon_log"]
    (run,) = result["action_runs"][str(rt_id)]
    assert run["state"] == "succeeded", run
    (entry,) = result["queries"]["action"]
    assert entry["MESSAGE"] == (f"action CustomCommand (run {run['id']}) for job {job['id']}: "
                                "succeeded: sh exited 0: told")
    assert (entry["MULTIFLEXI_JOB_ID"], entry["MULTIFLEXI_ACTION"]) == (
        str(job["id"]), "CustomCommand")
    assert (entry["MULTIFLEXI_ACTION_ID"], entry["MULTIFLEXI_ACTION_RUN_ID"],
            entry["MULTIFLEXI_ACTION_STATE"], entry["MULTIFLEXI_ACTION_TRIGGER"],
            entry["MULTIFLEXI_RUNTEMPLATE_ID"], entry["MULTIFLEXI_COMPANY"]) == (
        str(run["action_id"]), str(run["id"]), "succeeded", "failure", str(rt_id), "acme")
    assert "MULTIFLEXI_TICK_ID" not in entry
    # ...and it is part of the job's story.
    assert entry["MESSAGE"] in [e["MESSAGE"] for e in result["entries"]]
    (tick_run,) = result["action_runs"][str(overdue)]
    (told,) = result["queries"]["tick"]
    assert told["MULTIFLEXI_TICK_ID"] == str(tick_run["tick_id"])
    assert told["MULTIFLEXI_ACTION_TRIGGER"] == "missed" and "MULTIFLEXI_JOB_ID" not in told
    assert told["MESSAGE"].startswith(
        f"action CustomCommand (run {tick_run['id']}) for tick {tick_run['tick_id']} (missed):")
