"""One admin, many companies, with multiflexi-cli on SQLite and PostgreSQL: clones of
templates and credentials, bulk changes (dry run, all or nothing), a company's environment,
tags and notes, and pruning old jobs — each read back from the database and the audit
trail. (The socket's methods: test_many_socket.py; a real job's environment through the
real daemon: tests/e2e/test_company_env_daemon.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from multiflexid.core import Core
from multiflexid.services import actions, jobs
from multiflexid.store.orm import (
    ActionRun,
    Artifact,
    CompanyEnv,
    CredentialValue,
    Job,
    JobOutput,
    RunTemplate,
    RunTemplateConfig,
)
from tests.support.factory import run_to_end, shell_app, write_app

PROBE = "775ed801-2489-4981-bc14-d8a01cba1938"
SECRET = "Many-Secret-Pw-5150"


@pytest.fixture
def db_url(reused_db_url: str) -> str:
    """This module's tests share one database per backend, emptied before each test."""
    return reused_db_url


def ok(mfcli, *args: str) -> Any:
    r = mfcli(*args, "--format", "json")
    assert r.code == 0, r.err
    return r.json


def error(mfcli, *args: str) -> str:
    r = mfcli(*args)
    assert (r.code, r.out) == (1, ""), (r.out, r.err)
    assert r.err.startswith("multiflexi-cli: error: ") and r.err.count("\n") == 1, r.err
    return r.err.removeprefix("multiflexi-cli: error: ").rstrip("\n")


@pytest.fixture
def site(mfcli, examples_dir: Path) -> dict[str, int]:
    """acme with a credential and two probe templates (one secret in its config), globex
    and initech with a credential of the same type each, umbrella with none."""
    ok(mfcli, "application", "import-json", "--file",
       str(examples_dir / "probe.multiflexi.app.json"))
    ok(mfcli, "credential-type", "import-json", "--file", str(examples_dir / "credential-types"))
    ids: dict[str, int] = {}
    for slug in ("acme", "globex", "initech", "umbrella"):
        ids[slug] = ok(mfcli, "company", "create", "--name", slug.title(), "--slug", slug)["id"]
    for slug in ("acme", "globex", "initech"):
        ids[f"cred_{slug}"] = ok(mfcli, "credential", "create", "--company", slug, "--type",
                                 "Probe", "--name", "main",
                                 "--field", f"PASSWORD={SECRET}-{slug}")["id"]
    ids["rt1"] = ok(mfcli, "runtemplate", "create", "--app", PROBE, "--company", "acme",
                    "--name", "bank import", "--interv", "d", "--config", "FORCE_EXITCODE=1",
                    "--config", f"PASSWORD={SECRET}", "--credential", str(ids["cred_acme"]),
                    "--tag", "Nightly", "--tag", "bank", "--note", "ask Jana first")["id"]
    ids["rt2"] = ok(mfcli, "runtemplate", "create", "--app", PROBE, "--company", "acme",
                    "--name", "second", "--config", "FORCE_EXITCODE=0", "--tag",
                    "nightly")["id"]
    return ids


def _config(core: Core, rt_id: int) -> dict[str, tuple[str, bool]]:
    with core.db.session() as s:
        return {c.key: (c.value, c.encrypted) for c in s.scalars(
            select(RunTemplateConfig).where(RunTemplateConfig.runtemplate_id == rt_id))}


def _audit(mfcli, *args: str) -> list[dict[str, Any]]:
    return list(ok(mfcli, "audit", "list", *args))


# --- tags and notes ---------------------------------------------------------------------------


def test_tags_and_notes_on_templates(mfcli, site: dict[str, int]) -> None:
    shown = ok(mfcli, "runtemplate", "show", "--id", str(site["rt1"]))
    assert (shown["tags"], shown["note"]) == (["bank", "nightly"], "ask Jana first")
    text = mfcli("runtemplate", "show", "--id", str(site["rt1"])).out
    assert "tags                   bank, nightly\n" in text
    assert "note                   ask Jana first\n" in text
    listed = ok(mfcli, "runtemplate", "list", "--tag", "NIGHTLY")
    assert [r["id"] for r in listed] == [site["rt1"], site["rt2"]]
    assert [r["id"] for r in ok(mfcli, "runtemplate", "list", "--tag", "bank")] == [site["rt1"]]
    changed = ok(mfcli, "runtemplate", "update", "--id", str(site["rt2"]), "--tag", "bank",
                 "--tag", "weekly", "--note", "")
    assert (changed["tags"], changed["note"]) == (["bank", "weekly"], None)
    assert ok(mfcli, "runtemplate", "list", "--tag", "nightly") == [
        ok(mfcli, "runtemplate", "show", "--id", str(site["rt1"]))]
    assert ok(mfcli, "runtemplate", "update", "--id", str(site["rt2"]), "--no-tags")["tags"] == []
    assert error(mfcli, "runtemplate", "update", "--id", str(site["rt2"]), "--tag",
                 "no spaces") == ("tags: 'no spaces' is not a tag (1-64 letters, digits, '_', "
                                  "'.', ':', '/', '+' or '-', starting with a letter or digit)")
    entry = _audit(mfcli, "--entity", "runtemplate")[1]  # before --no-tags
    assert entry["diff"] == {"tags.bank": "added", "tags.nightly": "removed",
                             "tags.weekly": "added"}


# --- clones -------------------------------------------------------------------------------------


def test_clone_a_template_into_another_company(mfcli, core: Core, site: dict[str, int]) -> None:
    with core.db.session() as s:
        rt = s.get(RunTemplate, site["rt1"])
        assert rt is not None
        actions.add_action(s, core.box, module="WebHook", trigger="failure", runtemplate=rt,
                           values={"uri": "https://hooks.example/x", "secret": "hook-secret"})
    made = ok(mfcli, "runtemplate", "clone", "--id", str(site["rt1"]), "--company", "globex")
    assert (made["company"], made["name"], made["active"], made["next_schedule"]) == (
        "globex", "bank import", False, None)
    assert made["credentials"] == [site["cred_globex"]]  # re-pointed: same type, globex's
    assert (made["interv"], made["tags"], made["note"]) == ("d", ["bank", "nightly"],
                                                           "ask Jana first")
    source, copy = _config(core, site["rt1"]), _config(core, made["id"])
    assert copy == source  # the stored values as they were: the secret still encrypted
    assert copy["PASSWORD"][1] is True and SECRET not in copy["PASSWORD"][0]
    env = ok(mfcli, "runtemplate", "env", "--id", str(made["id"]), "--reveal")["environment"]
    assert (env["PASSWORD"], env["FORCE_EXITCODE"]) == (SECRET, "1")
    cloned_actions = ok(mfcli, "runtemplate", "action", "list", "--id", str(made["id"]))
    assert [(a["module"], a["config"]["secret"]) for a in cloned_actions
            if a["scope"] == "runtemplate"] == [("WebHook", "********")]
    entry = _audit(mfcli, "--entity", "runtemplate")[0]
    assert (entry["action"], entry["entity_id"], entry["company_id"]) == (
        "cloned", made["id"], site["globex"])
    assert entry["summary"] == (f"run template {made['id']} 'bank import' cloned from run "
                                f"template {site['rt1']} 'bank import' (acme -> globex), "
                                "created disabled")
    assert entry["diff"]["cloned_from"] == [None, site["rt1"]]
    assert entry["diff"]["config.PASSWORD"] == "set" and SECRET not in json.dumps(entry)
    # within its company: "(copy)", the same credential
    same = ok(mfcli, "runtemplate", "clone", "--id", str(site["rt1"]))
    assert (same["name"], same["company"], same["credentials"], same["active"]) == (
        "bank import (copy)", "acme", [site["cred_acme"]], False)


def test_a_clone_without_a_counterpart_credential_is_refused(mfcli, core: Core,
                                                            site: dict[str, int]) -> None:
    before = ok(mfcli, "runtemplate", "list")
    assert error(mfcli, "runtemplate", "clone", "--id", str(site["rt1"]), "--company",
                 "umbrella") == (
        f"company: umbrella has no credential of type Probe (the template uses credential "
        f"{site['cred_acme']} 'main'); create one, or copy it with `credential clone --id "
        f"{site['cred_acme']} --company umbrella`")
    assert ok(mfcli, "runtemplate", "list") == before
    ok(mfcli, "credential", "create", "--company", "initech", "--type", "Probe", "--name",
       "other", "--field", "PASSWORD=x")
    ok(mfcli, "credential", "create", "--company", "umbrella", "--type", "Probe", "--name",
       "a", "--field", "PASSWORD=x")
    ok(mfcli, "credential", "create", "--company", "umbrella", "--type", "Probe", "--name",
       "b", "--field", "PASSWORD=x")
    assert "none named 'main': which one stands in for" in error(
        mfcli, "runtemplate", "clone", "--id", str(site["rt1"]), "--company", "umbrella")
    # two of the type, one of the same name: that one
    made = ok(mfcli, "runtemplate", "clone", "--id", str(site["rt1"]), "--company", "initech",
              "--name", "imported")
    assert (made["name"], made["credentials"]) == ("imported", [site["cred_initech"]])


def test_clone_a_credential(mfcli, core: Core, site: dict[str, int]) -> None:
    made = ok(mfcli, "credential", "clone", "--id", str(site["cred_acme"]), "--company",
              "umbrella")
    assert (made["company"], made["name"], made["type"]) == ("umbrella", "main", "Probe")
    assert made["values"]["PASSWORD"] == "********"
    with core.db.session() as s:
        stored = {v.credential_id: (v.value, v.encrypted) for v in s.scalars(
            select(CredentialValue).where(CredentialValue.key == "PASSWORD"))}
    assert stored[made["id"]] == stored[site["cred_acme"]]  # copied encrypted, as stored
    revealed = ok(mfcli, "credential", "show", "--id", str(made["id"]), "--reveal")
    assert revealed["values"]["PASSWORD"] == f"{SECRET}-acme"
    r = mfcli("credential", "clone", "--id", str(site["cred_acme"]), "--company", "umbrella")
    assert r.out == "" and SECRET not in r.err
    assert r.err == ("multiflexi-cli: error: name: company umbrella already has a credential "
                     "named 'main'\n")
    copy = ok(mfcli, "credential", "clone", "--id", str(site["cred_acme"]))
    assert (copy["company"], copy["name"]) == ("acme", "main (copy)")
    entry = _audit(mfcli, "--entity", "credential")[0]
    assert (entry["action"], entry["diff"]["cloned_from"]) == ("cloned", [None, site["cred_acme"]])
    assert entry["diff"]["values.PASSWORD"] == "set" and SECRET not in json.dumps(entry)


# --- bulk changes ---------------------------------------------------------------------------------


def test_bulk_dry_run_prints_the_diff_and_changes_nothing(mfcli, core: Core,
                                                          site: dict[str, int]) -> None:
    before = (_config(core, site["rt1"]), _config(core, site["rt2"]))
    r = mfcli("runtemplate", "bulk", "set-config", "--tag", "nightly", "FORCE_EXITCODE=3",
              "PASSWORD=new-one", "--dry-run")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        f"run template {site['rt1']} 'bank import' (acme)\n"
        "  config.FORCE_EXITCODE: 1 -> 3\n"
        "  config.PASSWORD: (secret changed)\n"
        f"run template {site['rt2']} 'second' (acme)\n"
        "  config.FORCE_EXITCODE: 0 -> 3\n"
        "  config.PASSWORD: (secret changed)\n"
        "dry run: 2 of 2 run template(s) would change; nothing was changed\n")
    doc = ok(mfcli, "runtemplate", "bulk", "set-config", "--tag", "nightly",
             "FORCE_EXITCODE=1", "--dry-run")
    assert doc == {"applied": False, "changes": [
        {"id": site["rt1"], "name": "bank import", "company": "acme", "diff": []},
        {"id": site["rt2"], "name": "second", "company": "acme",
         "diff": [{"field": "config.FORCE_EXITCODE", "old": "0", "new": "1"}]}]}
    assert (_config(core, site["rt1"]), _config(core, site["rt2"])) == before
    assert not [e for e in _audit(mfcli) if e["action"].startswith("bulk")]


def test_bulk_set_config_applies_to_all(mfcli, core: Core, site: dict[str, int]) -> None:
    r = mfcli("runtemplate", "bulk", "set-config", "--id", str(site["rt1"]), "--id",
              str(site["rt2"]), "FORCE_EXITCODE=4", "--secret", "PASSWORD=bulk-pw")
    assert (r.code, r.err) == (0, ""), r.err
    assert r.out.endswith("changed 2 of 2 run template(s)\n") and "bulk-pw" not in r.out
    for rt in (site["rt1"], site["rt2"]):
        env = ok(mfcli, "runtemplate", "env", "--id", str(rt), "--reveal")["environment"]
        assert (env["FORCE_EXITCODE"], env["PASSWORD"]) == ("4", "bulk-pw")
        assert _config(core, rt)["PASSWORD"][1] is True
    entries = [e for e in _audit(mfcli, "--entity", "runtemplate")
               if e["action"] == "bulk set-config"]
    assert sorted(e["entity_id"] for e in entries) == [site["rt1"], site["rt2"]]
    assert all(e["diff"]["config.PASSWORD"] in ("set", "changed") for e in entries)
    assert entries[0]["summary"].endswith("changed by bulk set-config (2 of 2 selected "
                                          "template(s) changed)")
    assert "bulk-pw" not in json.dumps(entries)


def test_one_bad_template_changes_none(mfcli, core: Core, site: dict[str, int],
                                      tmp_path: Path) -> None:
    """The bad template comes last: the good ones before it are not changed either."""
    counter = shell_app("Counter")
    counter["environment"]["LIMIT"] = {"type": "integer", "description": "how many"}
    app = ok(mfcli, "application", "import-json", "--file",
             str(write_app(tmp_path / "counter.json", counter)))[0]["app_id"]
    other = ok(mfcli, "runtemplate", "create", "--app", str(app), "--company", "globex",
               "--name", "globex count", "--tag", "nightly")["id"]
    before = {rt: _config(core, rt) for rt in (site["rt1"], site["rt2"], other)}
    # LIMIT is an integer of the Counter app only (the probe's templates take any text)
    assert error(mfcli, "runtemplate", "bulk", "set-config", "--tag", "nightly",
                 "LIMIT=lots", "FORCE_EXITCODE=9") == (
        f"run template {other} 'globex count' (globex): config.LIMIT: 'lots' is not an "
        "integer; nothing was changed")
    assert {rt: _config(core, rt) for rt in before} == before
    # a credential of acme for a selection that holds a globex template
    assert error(mfcli, "runtemplate", "bulk", "assign-credential", "--tag", "nightly",
                 "--credential", str(site["cred_acme"])) == (
        f"run template {other} 'globex count' (globex): credential: credential "
        f"{site['cred_acme']} 'main' belongs to company acme: refused; nothing was changed")
    shown = [ok(mfcli, "runtemplate", "show", "--id", str(rt)) for rt in (site["rt2"], other)]
    assert [s["credentials"] for s in shown] == [[], []]
    assert not [e for e in _audit(mfcli) if e["action"].startswith("bulk")]
    # without the bad one, the same change goes through
    ok(mfcli, "runtemplate", "bulk", "set-config", "--tag", "nightly", "--company", "acme",
       "LIMIT=lots", "FORCE_EXITCODE=9")
    assert _config(core, site["rt2"])["LIMIT"] == ("lots", False)


def test_bulk_selections_enable_disable_schedule_and_run(mfcli, core: Core,
                                                         site: dict[str, int]) -> None:
    assert error(mfcli, "runtemplate", "bulk", "disable", "--tag", "nobody-has-it") == (
        "selection: no run template matches (tag nobody-has-it); nothing was changed")
    assert error(mfcli, "runtemplate", "bulk", "enable", "--id", "999") == (
        "selection.ids: no run template with id 999; nothing was changed")
    r = mfcli("runtemplate", "bulk", "enable")
    assert r.code == 1 and "selection: give ids, app, company, tag or state" in r.err
    doc = ok(mfcli, "runtemplate", "bulk", "disable", "--company", "acme", "--app", PROBE)
    assert doc["applied"] and [c["diff"] for c in doc["changes"]] == [
        [{"field": "active", "old": True, "new": False}]] * 2
    assert [r["active"] for r in ok(mfcli, "runtemplate", "list", "--company", "acme")] == [
        False, False]
    assert mfcli("runtemplate", "bulk", "disable", "--company", "acme").out == (
        f"run template {site['rt1']} 'bank import' (acme): no change\n"
        f"run template {site['rt2']} 'second' (acme): no change\n"
        "changed 0 of 2 run template(s)\n")
    ok(mfcli, "runtemplate", "bulk", "enable", "--id", str(site["rt2"]))
    r = mfcli("runtemplate", "bulk", "set-schedule", "--company", "acme", "--interv", "c",
              "--cron", "30 2 * * *", "--dry-run")
    assert r.out == (
        f"run template {site['rt1']} 'bank import' (acme)\n"
        "  interv: d -> c\n  cron: (not set) -> 30 2 * * *\n"
        f"run template {site['rt2']} 'second' (acme)\n"
        "  interv: n -> c\n  cron: (not set) -> 30 2 * * *\n"
        "dry run: 2 of 2 run template(s) would change; nothing was changed\n")
    assert "'61 2 * * *'" in error(mfcli, "runtemplate", "bulk", "set-schedule", "--company",
                                   "acme", "--interv", "c", "--cron", "61 2 * * *")
    ok(mfcli, "runtemplate", "bulk", "set-schedule", "--company", "acme", "--interv", "c",
       "--cron", "30 2 * * *")
    shown = ok(mfcli, "runtemplate", "show", "--id", str(site["rt2"]))
    assert (shown["interv"], shown["cron"]) == ("c", "30 2 * * *") and shown["next_schedule"]
    # run: the daemon is not running, so the jobs are queued for its start
    ran = ok(mfcli, "runtemplate", "bulk", "run", "--tag", "nightly")
    assert len(ran["jobs"]) == 2
    queued = ok(mfcli, "job", "list")
    assert sorted(j["id"] for j in queued) == sorted(ran["jobs"])
    assert {j["schedule_type"] for j in queued} == {"adhoc-cli"}
    # --state: the state of each template's last job
    with core.db.session() as s:
        assert core.transitions.claim(s, datetime.now(UTC), "n1", 10) == sorted(ran["jobs"])
    with core.db.session() as s:
        run_to_end(core, s, ran["jobs"][0], datetime.now(UTC), exitcode=1)
        run_to_end(core, s, ran["jobs"][1], datetime.now(UTC), exitcode=0)
    failed = ok(mfcli, "runtemplate", "bulk", "disable", "--state", "failed", "--dry-run")
    assert [c["id"] for c in failed["changes"]] == [ok(mfcli, "job", "show", "--id", str(
        ran["jobs"][0]))["runtemplate_id"]]


# --- the company's environment ------------------------------------------------------------------


def test_company_environment(mfcli, core: Core, site: dict[str, int]) -> None:
    r = mfcli("company", "env", "set", "--company", "acme", "ERP_URL=https://erp.acme",
              "FORCE_EXITCODE=7", "APP_DEBUG=yes")
    assert (r.code, r.out) == (0, "company acme: set ERP_URL, FORCE_EXITCODE, APP_DEBUG\n")
    ok(mfcli, "company", "env", "set", "--company", "acme", "PIN=9876", "--secret")
    ok(mfcli, "company", "env", "set", "--company", "acme", "API_TOKEN=tok-4711")
    assert mfcli("company", "env", "list", "--company", "acme").out == (
        "KEY             VALUE             SECRET\n"
        "API_TOKEN       ********          yes\n"
        "APP_DEBUG       yes               no\n"
        "ERP_URL         https://erp.acme  no\n"
        "FORCE_EXITCODE  7                 no\n"
        "PIN             ********          yes\n")
    revealed = ok(mfcli, "company", "env", "list", "--company", "acme", "--reveal")
    assert {r["key"]: r["value"] for r in revealed}["PIN"] == "9876"
    with core.db.session() as s:
        stored = {r.key: r for r in s.scalars(select(CompanyEnv))}
    assert stored["PIN"].encrypted and "9876" not in stored["PIN"].value
    assert stored["API_TOKEN"].encrypted and not stored["ERP_URL"].encrypted
    # the order: app default < company environment < credential < template < one-off
    explained = {e["key"]: e for e in ok(mfcli, "runtemplate", "env", "--id",
                                         str(site["rt2"]), "--explain")["environment"]}
    assert (explained["ERP_URL"]["value"], explained["ERP_URL"]["source"]) == (
        "https://erp.acme", "company environment")
    assert (explained["PIN"]["value"], explained["PIN"]["secret"]) == ("********", True)
    assert (explained["APP_DEBUG"]["value"], explained["APP_DEBUG"]["overridden"]) == (
        "1", ["app default"])  # checked as the app's bool field
    assert explained["FORCE_EXITCODE"]["source"] == "run template"
    assert explained["FORCE_EXITCODE"]["overridden"] == ["app default", "company environment"]
    one = {e["key"]: e for e in ok(mfcli, "runtemplate", "env", "--id", str(site["rt1"]),
                                   "--explain")["environment"]}
    assert one["PASSWORD"]["overridden"] == [  # the template's own wins
        "app default", f"credential #{site['cred_acme']} 'main' (Probe)"]
    text = mfcli("runtemplate", "env", "--id", str(site["rt2"]), "--explain").out
    assert "ERP_URL=https://erp.acme\n    from company environment\n" in text
    assert "9876" not in text and "tok-4711" not in text
    globex = ok(mfcli, "runtemplate", "create", "--app", PROBE, "--company", "globex",
                "--name", "g")["id"]
    assert "ERP_URL" not in ok(mfcli, "runtemplate", "env", "--id", str(globex))["environment"]
    # unset; errors name the key
    ok(mfcli, "company", "env", "unset", "--company", "acme", "ERP_URL")
    assert "ERP_URL" not in {r["key"] for r in ok(mfcli, "company", "env", "list",
                                                  "--company", "acme")}
    assert error(mfcli, "company", "env", "unset", "--company", "acme", "ERP_URL") == (
        "ERP_URL: not set in the environment of company acme")
    assert error(mfcli, "company", "env", "set", "--company", "acme", "1X=y") == (
        "1X: not a variable name (letters, digits and '_', not starting with a digit)")
    assert error(mfcli, "company", "env", "set", "--company", "acme",
                 "MULTIFLEXI_JOB_ID=1") == (
        "MULTIFLEXI_JOB_ID: MULTIFLEXI_* variables are set by MultiFlexi itself")
    entries = _audit(mfcli, "--entity", "company", "--company", "acme")
    diffs = json.dumps([e["diff"] for e in entries])
    assert '"environment.PIN": "set"' in diffs and '"environment.ERP_URL": [null' in diffs
    assert "9876" not in diffs and "tok-4711" not in diffs


# --- pruning old jobs -------------------------------------------------------------------------


def _finished(core: Core, rt_id: int, when: datetime, *, exitcode: int = 0,
              output: bytes = b"", artifact: bool = False) -> int:
    """A job of ``rt_id`` that ran and ended at ``when`` (with output and an artifact)."""
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        job = jobs.create_job(s, core.transitions, rt, schedule_type="adhoc",
                              launched_by="t", after=when, box=core.box)
    with core.db.session() as s:
        assert core.transitions.claim(s, when, "n1", 10) == [job.id]
    with core.db.session() as s:
        run_to_end(core, s, job.id, when, exitcode=exitcode)
        if output:
            s.add(JobOutput(job_id=job.id, seq=0, stream="stdout", at=when, data=output))
        if artifact:
            s.add(Artifact(job_id=job.id, filename="report.json", size=2, content=b"{}"))
    return job.id


def test_prune_old_jobs(mfcli, core: Core, site: dict[str, int]) -> None:
    old = datetime(2025, 1, 1, tzinfo=UTC)
    globex = ok(mfcli, "runtemplate", "create", "--app", PROBE, "--company", "globex",
                "--name", "g")["id"]
    a1 = [_finished(core, site["rt1"], old + timedelta(days=i), output=b"x" * 100,
                    artifact=i == 0) for i in range(4)]
    a2 = _finished(core, site["rt2"], old, output=b"y" * 10)
    g = [_finished(core, globex, old + timedelta(days=i), output=b"z" * 7) for i in range(2)]
    recent = _finished(core, site["rt2"], datetime.now(UTC) - timedelta(minutes=5))
    # an old job that failed and whose webhook is still to be delivered stays
    with core.db.session() as s:
        rt = s.get(RunTemplate, globex)
        assert rt is not None
        actions.add_action(s, core.box, module="WebHook", trigger="failure", runtemplate=rt,
                           values={"uri": "https://hooks.example/x"})
    undelivered = _finished(core, globex, old + timedelta(days=3), exitcode=1)
    # a job that runs, one claimed and one queued: never removed, however old
    with core.db.session() as s:
        rt1, rt2 = s.get(RunTemplate, site["rt1"]), s.get(RunTemplate, site["rt2"])
        assert rt1 is not None and rt2 is not None
        running = jobs.create_job(s, core.transitions, rt1, schedule_type="adhoc",
                                  launched_by="t", after=old, box=core.box).id
        claimed = jobs.create_job(s, core.transitions, rt2, schedule_type="adhoc",
                                  launched_by="t", after=old, box=core.box).id
    with core.db.session() as s:
        assert sorted(core.transitions.claim(s, old, "n1", 10)) == [running, claimed]
        core.transitions.start(s, running, "n1", old)
        queued = jobs.create_job(s, core.transitions, s.get(RunTemplate, globex),
                                 schedule_type="adhoc", launched_by="t", after=old,
                                 box=core.box).id
    r = mfcli("job", "prune", "--before", "2026-01-01T00:00:00Z", "--keep-last", "1",
              "--dry-run")
    assert (r.code, r.err) == (0, "")
    assert r.out == (
        "would remove 6 job(s) ended before 2026-01-01T00:00:00Z, keeping the newest 1 of "
        "each template:\n"
        "COMPANY  JOBS  OUTPUT BYTES  ARTIFACTS  ACTION RUNS\n"
        "acme     4     310           1          0\n"
        "globex   2     14            0          0\n"
        "dry run: nothing was removed\n")
    with core.db.session() as s:
        assert s.scalar(select(Job.id).where(Job.id == a1[0])) == a1[0]
    doc = ok(mfcli, "job", "prune", "--before", "2026-01-01T00:00:00Z", "--keep-last", "1")
    assert doc["removed"] and doc["total"] == {"jobs": 6, "output_bytes": 324, "artifacts": 1,
                                               "action_runs": 0}
    with core.db.session() as s:
        left = set(s.scalars(select(Job.id)))
        assert not s.scalars(select(JobOutput).where(JobOutput.job_id.in_(a1[:3]))).all()
        assert not s.scalars(select(Artifact)).all()
        assert s.scalars(select(ActionRun.job_id)).all() == [undelivered]
    # kept: the newest finished job of each template (globex's is the undelivered one), and
    # the running, claimed and queued ones
    assert left == {a1[3], recent, undelivered, running, claimed, queued}
    assert a2 not in left and not set(g) & left
    entry = _audit(mfcli, "--entity", "job")[0]
    assert (entry["action"], entry["company_id"]) == ("prune", None)
    assert entry["summary"] == (
        "pruned 6 job(s) ended before 2026-01-01T00:00:00Z, keeping the newest 1 of each "
        "template: 324 bytes of output, 1 artifact(s), 0 action run(s)")
    assert entry["diff"]["criteria.keep_last"] == [None, 1]
    assert entry["diff"]["removed.by_company"][1]["acme"]["jobs"] == 4
    # one company, no keep-last: everything old and finished of it
    doc = ok(mfcli, "job", "prune", "--before", "2026-01-01T00:00:00Z", "--company", "acme")
    assert doc["companies"] == {"acme": {"jobs": 1, "output_bytes": 100, "artifacts": 0,
                                         "action_runs": 0}}
    assert _audit(mfcli, "--entity", "job")[0]["company_id"] == site["acme"]
    # without keep-last the undelivered one stays, and so do the unfinished ones
    ok(mfcli, "job", "prune", "--before", "2026-01-01T00:00:00Z")
    with core.db.session() as s:
        assert set(s.scalars(select(Job.id))) == {recent, undelivered, running, claimed, queued}
    assert error(mfcli, "job", "prune", "--before", "2026-01-01T00:00") == (
        "--before: '2026-01-01T00:00' has no time zone (add Z or +01:00)")
