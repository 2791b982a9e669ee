"""Who may do what for which company, through the real socket with real Unix users in
different groups; and the record of who did.

Needs root: it creates users and groups (removed afterwards) and runs clients as them.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import program, running_daemon
from tests.support.factory import make_template

pytestmark = pytest.mark.root_only

ROOT = Path(__file__).resolve().parents[2]
GROUPS = ("mft-viewers", "mft-acme-ops", "mft-globex-ops", "mft-acme-admins")
USERS = {  # user -> their groups
    "mftbob": ["mft-viewers"],  # viewer of every company (multiflexi.conf)
    "mftalice": ["mft-acme-ops"],  # operator of acme (multiflexi.conf)
    "mftcarol": ["mft-globex-ops"],  # operator of globex (access grant)
    "mftdave": ["mft-acme-admins"],  # admin of acme (access grant)
    "mfteve": [],  # nothing at all
}
CONF = """
[[access]]
group = "mft-viewers"
role = "viewer"

[[access]]
group = "mft-acme-ops"
role = "operator"
company = "acme"
"""


@pytest.fixture(scope="module")
def unix_users(require_root: None) -> Iterator[None]:
    for group in GROUPS:
        subprocess.run(["groupadd", "--force", group], check=True)
    for user, groups in USERS.items():
        subprocess.run(["userdel", user], capture_output=True, check=False)
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        *(["--groups", ",".join(groups)] if groups else []), user], check=True)
    try:
        yield
    finally:
        for user in USERS:
            subprocess.run(["userdel", user], capture_output=True, check=False)
        for group in GROUPS:
            subprocess.run(["groupdel", group], capture_output=True, check=False)


@pytest.fixture
def site(unix_users: None, mf_env: Env, core: Core, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two companies with a template each, grants from the config file and the CLI, and
    the daemon on a socket every test user can reach (the daemon itself must refuse)."""
    core.ensure_schema()
    ids = {"acme": make_template(core, company="acme", name="acme-job",
                                 config={"SCRIPT": "echo acme"}),
           "globex": make_template(core, company="globex", name="globex-job",
                                   config={"SCRIPT": "echo globex"})}
    public = Path(tempfile.mkdtemp(prefix="mf-access-"))
    public.chmod(0o755)
    conf = public / "multiflexi.conf"  # readable by the test users, unlike tmp_path
    conf.write_text(CONF)
    conf.chmod(0o644)
    env = {**mf_env.vars(), "MULTIFLEXI_CONFIG": str(conf),
           "MULTIFLEXI_SOCKET": str(public / "mf.sock")}
    for group, company, role in (("mft-globex-ops", "globex", "operator"),
                                 ("mft-acme-admins", "acme", "admin")):
        cli(env, "access", "grant", "--group", group, "--role", role, "--company", company)
    try:
        with running_daemon(env, tmp_path) as d:
            os.chmod(d.socket, 0o666)
            yield {"env": env, "daemon": d, "rt": ids, "socket": str(d.socket)}
    finally:
        shutil.rmtree(public, ignore_errors=True)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([program("multiflexi-cli"), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


def as_user(user: str, socket: str, body: str) -> Any:
    """Run ``body`` (Python, with ``c`` a Client of the daemon and ``out`` a dict printed as
    JSON at the end) as ``user`` with that user's groups, as a login would give them."""
    pw = pwd.getpwnam(user)
    groups = os.getgrouplist(user, pw.pw_gid)
    code = textwrap.dedent(f"""
        import json, os, sys
        from multiflexi.client import Client  # imported while still root: then the user
        from multiflexi.errors import MultiFlexiError  # (root's Python is not theirs)
        os.setgroups({groups!r}); os.setgid({pw.pw_gid}); os.setuid({pw.pw_uid})
        out = {{}}
        def attempt(label, method, **params):
            try:
                out[label] = {{"ok": c.call_with(method, params)}}
            except MultiFlexiError as exc:
                out[label] = {{"error": exc.name, "message": exc.message}}
        try:
            c = Client({socket!r}, timeout=20)
            c.__enter__()
        except MultiFlexiError as exc:
            print(json.dumps({{"refused": exc.message}})); sys.exit(0)
    """) + textwrap.dedent(body) + "\nprint(json.dumps(out, default=str))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=90, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_viewer_sees_every_company_and_may_not_run(site: dict[str, Any]) -> None:
    rt = site["rt"]
    got = as_user("mftbob", site["socket"], f"""
        attempt("companies", "company.list")
        attempt("run", "runtemplate.run", id={rt['acme']})
        attempt("template", "runtemplate.get", id={rt['globex']})
        attempt("status", "daemon.status")
    """)
    assert {c["slug"] for c in got["companies"]["ok"]["items"]} == {"acme", "globex"}
    assert got["run"]["error"] == "forbidden"
    assert got["run"]["message"] == ("runtemplate.run needs role operator on company acme; "
                                     "mftbob has role viewer there")
    assert got["template"]["ok"]["name"] == "globex-job"
    assert got["status"]["ok"]["access"] == {"everywhere": "viewer", "companies": {}}


def test_an_operator_of_one_company_neither_sees_nor_hears_of_another(
        site: dict[str, Any]) -> None:
    rt, d = site["rt"], site["daemon"]
    d.wait_job(d.call("runtemplate.run", id=rt["globex"])["id"])  # history of both
    d.wait_job(d.call("runtemplate.run", id=rt["acme"])["id"])
    # A client of alice's listens while root runs a job of each company.
    code_events = """
        c.call("events.subscribe", jobs=True, runtemplates=True)
        print("SUBSCRIBED", flush=True)
        out["events"] = []
        for method, params in c.notifications(timeout=25):
            item = params.get("job") or params.get("runtemplate") or {}
            out["events"].append([method, item.get("company_id"), item.get("state"),
                                  item.get("id")])
            if method == "job.changed" and item.get("state") == "succeeded":
                break
    """
    listener = _start_as_user("mftalice", site["socket"], code_events)
    try:
        _wait_line(listener, "SUBSCRIBED")
        globex_job = d.call("runtemplate.run", id=rt["globex"])["id"]
        d.wait_job(globex_job)
        acme_job = d.call("runtemplate.run", id=rt["acme"])["id"]
        d.wait_job(acme_job)
        out, err = listener.communicate(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
    assert listener.returncode == 0, out + err
    events = json.loads(out.strip().splitlines()[-1])["events"]
    assert events and {e[1] for e in events} == {1}, events  # acme's only
    assert any(e[3] == acme_job for e in events) and all(e[3] != globex_job for e in events)
    got = as_user("mftalice", site["socket"], f"""
        attempt("companies", "company.list")
        attempt("templates", "runtemplate.list")
        attempt("jobs", "job.list")
        attempt("other", "runtemplate.get", id={rt['globex']})
        attempt("output", "events.subscribe", job_output={globex_job})
        attempt("create", "runtemplate.create", app_id=1, company_id=1, name="new")
        attempt("mine", "runtemplate.run", id={rt['acme']})
    """)
    assert [c["slug"] for c in got["companies"]["ok"]["items"]] == ["acme"]
    assert [t["company"] for t in got["templates"]["ok"]["items"]] == ["acme"]
    assert {j["company_id"] for j in got["jobs"]["ok"]["items"]} == {1}
    assert got["other"]["message"] == ("runtemplate.get needs role viewer on company globex; "
                                       "mftalice has no role there")
    assert got["output"]["error"] == "forbidden"
    assert got["create"]["message"].startswith("runtemplate.create needs role admin on "
                                               "company acme; mftalice has role operator")
    assert got["mine"]["ok"]["launched_by"] == "mftalice"


def test_a_user_without_any_role_is_refused_saying_how_to_get_one(
        site: dict[str, Any]) -> None:
    got = as_user("mfteve", site["socket"], 'attempt("status", "daemon.status")')
    refused = got.get("refused") or got["status"]["message"]
    assert "user mfteve" in refused and "may not use multiflexid" in refused
    assert "multiflexi-cli access grant --group" in refused


def test_an_admins_change_is_in_the_audit_trail_with_its_diff_and_without_the_secret(
        site: dict[str, Any], core: Core) -> None:
    from multiflexid.services.apps import get_app

    with core.db.read_session() as s:
        app_id = get_app(s, "1").id
    got = as_user("mftdave", site["socket"], f"""
        attempt("create", "runtemplate.create", app_id={app_id}, company_id=1,
                name="by-dave", config={{"TOKEN": "dave-secret-771", "SCRIPT": "echo hi"}})
    """)
    assert got["create"]["ok"]["name"] == "by-dave", got
    rt_id = got["create"]["ok"]["id"]
    listed = cli(site["env"], "--format", "json", "audit", "list", "--company", "acme",
                 "--entity", "runtemplate", "--id", str(rt_id)).stdout
    assert "dave-secret-771" not in listed
    [entry] = json.loads(listed)
    assert (entry["user"], entry["via"], entry["action"]) == ("mftdave", "socket", "created")
    assert entry["diff"]["config.TOKEN"] == "set"
    assert entry["diff"]["config.SCRIPT"] == [None, "echo hi"]
    assert entry["diff"]["name"] == [None, "by-dave"]
    by_user = json.loads(cli(site["env"], "--format", "json", "audit", "list", "--user",
                             "mftdave").stdout)
    assert [e["entity_id"] for e in by_user] == [rt_id]
    # The grants made with the CLI are in the trail too, as root's.
    grants = json.loads(cli(site["env"], "--format", "json", "audit", "list", "--entity",
                            "access").stdout)
    assert {(e["user"], e["via"], e["action"]) for e in grants} == {("root", "cli", "created")}


def test_an_admins_change_of_a_templates_configuration_is_audited_without_the_secret(
        site: dict[str, Any]) -> None:
    """dave (admin of acme) changes acme's template through the socket: a plain value and
    the secret one root had set. `audit list` shows his change with the plain value's
    before and after, the secret only as "changed", and neither secret anywhere."""
    rt = site["rt"]["acme"]
    site["daemon"].call("runtemplate.update", id=rt, config={"TOKEN": "root-secret-3141"})
    got = as_user("mftdave", site["socket"], f"""
        attempt("update", "runtemplate.update", id={rt},
                config={{"TOKEN": "dave-secret-2718", "SCRIPT": "echo changed"}})
    """)
    assert "dave-secret-2718" not in json.dumps(got)
    assert got["update"]["ok"]["id"] == rt, got
    args = ("audit", "list", "--entity", "runtemplate", "--id", str(rt), "--user", "mftdave")
    listed = cli(site["env"], "--format", "json", *args).stdout
    [entry] = json.loads(listed)
    assert (entry["user"], entry["via"], entry["action"]) == ("mftdave", "socket", "changed")
    assert entry["diff"] == {"config.TOKEN": "changed",
                             "config.SCRIPT": ["echo acme", "echo changed"]}
    text = cli(site["env"], *args).stdout
    assert "config.TOKEN: changed" in text and "'echo acme' -> 'echo changed'" in text
    for secret in ("root-secret-3141", "dave-secret-2718"):
        assert secret not in listed and secret not in text


LISTEN = """
    from multiflexi.errors import Forbidden
    c.call("events.subscribe", jobs=True)
    print("SUBSCRIBED", flush=True)
    out["events"] = []
    try:
        for method, params in c.notifications(timeout=40):
            job = params.get("job") or {}
            out["events"].append([job.get("id"), job.get("company_id"), job.get("state")])
            if job.get("company_id") == %(until)s and job.get("state") == "succeeded":
                break
    except Forbidden as exc:
        out["refused"] = exc.message
"""


def _wait_log(d: Any, text: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while text not in d.log():
        assert time.monotonic() < end, f"no {text!r} in the daemon's log:\n{d.log()}"
        time.sleep(0.1)


def _listened(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_a_revoked_grant_stops_the_events_of_a_client_that_only_listens(
        site: dict[str, Any], core: Core) -> None:
    """alice (operator of acme) is also given globex to view, and listens without calling
    anything. Once the grant is revoked with the CLI, the daemon notices by itself: she
    hears no more of globex's jobs, and still of acme's."""
    d, rt, company = site["daemon"], site["rt"], _company_ids(core)
    cli(site["env"], "access", "grant", "--group", "mft-acme-ops", "--role", "viewer",
        "--company", "globex")
    listener = _start_as_user("mftalice", site["socket"], LISTEN % {"until": company["acme"]})
    try:
        _wait_line(listener, "SUBSCRIBED")
        before = d.wait_job(d.call("runtemplate.run", id=rt["globex"])["id"])["id"]
        cli(site["env"], "access", "revoke", "--group", "mft-acme-ops", "--company", "globex")
        _wait_log(d, "roles of mftalice")
        after = d.wait_job(d.call("runtemplate.run", id=rt["globex"])["id"])["id"]
        mine = d.wait_job(d.call("runtemplate.run", id=rt["acme"])["id"])["id"]
        got = _listened(listener)
    finally:
        if listener.poll() is None:
            listener.kill()
    heard = {job for job, _company, _state in got["events"]}
    assert before in heard and mine in heard, got
    assert after not in heard, got
    assert f"roles of mftalice (pid {listener.pid}) changed: operator of company acme" in d.log()


def test_a_client_left_without_any_role_is_told_and_disconnected(
        site: dict[str, Any], core: Core) -> None:
    """carol's only grant is revoked with the CLI; alice is taken out of her group (her
    process still holds it, as a login session does). Both only listen: within seconds
    the daemon tells each why and hangs up."""
    d, company = site["daemon"], _company_ids(core)
    carol = _start_as_user("mftcarol", site["socket"], LISTEN % {"until": company["globex"]})
    alice = _start_as_user("mftalice", site["socket"], LISTEN % {"until": company["acme"]})
    try:
        _wait_line(carol, "SUBSCRIBED")
        _wait_line(alice, "SUBSCRIBED")
        cli(site["env"], "access", "revoke", "--group", "mft-globex-ops", "--company",
            "globex")
        subprocess.run(["gpasswd", "--delete", "mftalice", "mft-acme-ops"], check=True,
                       capture_output=True)
        heard = {"carol": _listened(carol), "alice": _listened(alice)}
    finally:
        subprocess.run(["gpasswd", "--add", "mftalice", "mft-acme-ops"], check=True,
                       capture_output=True)
        for proc in (carol, alice):
            if proc.poll() is None:
                proc.kill()
    for user, got in heard.items():
        assert got["events"] == [], got
        assert got["refused"].startswith(f"user mft{user} (uid ") and \
            "may not use multiflexid" in got["refused"], got
        assert f"roles of mft{user} (pid " in d.log()


SUDOERS = Path("/etc/sudoers.d/multiflexi-test-mftdave")


@pytest.fixture
def dave_may_sudo(unix_users: None) -> Iterator[None]:
    """mftdave may run anything as root with sudo (for this test only)."""
    if shutil.which("sudo") is None:
        pytest.fail("needs sudo (Debian package sudo; .ci/system-packages.sh installs it)")
    SUDOERS.write_text("mftdave ALL=(root) NOPASSWD: ALL\n")
    SUDOERS.chmod(0o440)
    try:
        yield
    finally:
        SUDOERS.unlink(missing_ok=True)


def _sudo_as_dave(site: dict[str, Any], *args: str, logged_in: bool) -> None:
    """mftdave runs ``sudo multiflexi-cli ARGS``, from a login session (pam_loginuid set
    the kernel's loginuid to his uid, as login and sshd do) or without one."""
    pw = pwd.getpwnam("mftdave")
    env = " ".join(f"{k}={v}" for k, v in site["env"].items())

    def become_dave() -> None:
        if logged_in:
            Path("/proc/self/loginuid").write_text(str(pw.pw_uid))
        os.setgroups(os.getgrouplist("mftdave", pw.pw_gid))
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)

    # sudo resets the environment: the installation's settings are passed with env(1)
    proc = subprocess.run(["sudo", "-n", "sh", "-c", f"exec env {env} \"$@\"", "sh",
                           program("multiflexi-cli"), *args],
                          env={"PATH": os.environ["PATH"], "HOME": "/"}, cwd="/",
                          preexec_fn=become_dave, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_under_real_sudo_the_invoking_user_is_recorded(site: dict[str, Any],
                                                       dave_may_sudo: None) -> None:
    """`sudo multiflexi-cli` by mftdave: the CLI's own change records root and, from
    SUDO_USER, mftdave. A run now it hands to the daemon records root and, from the
    kernel's loginuid, mftdave — when his session has one: without pam_loginuid (no login
    session, as cron jobs or containers without it) the daemon knows only root."""
    rt = site["rt"]["acme"]
    _sudo_as_dave(site, "company", "update", "--slug", "acme", "--email", "d@acme.example",
                  logged_in=True)
    _sudo_as_dave(site, "runtemplate", "run", "--id", str(rt), logged_in=True)
    _sudo_as_dave(site, "runtemplate", "run", "--id", str(rt), logged_in=False)
    entries = json.loads(cli(site["env"], "--format", "json", "audit", "list", "--company",
                             "acme", "--limit", "3").stdout)
    got = [(e["entity"], e["action"], e["via"], e["user"], e["login_user"])
           for e in reversed(entries)]
    assert got == [("company", "changed", "cli", "root", "mftdave"),
                   ("job", "run", "socket", "root", "mftdave"),
                   ("job", "run", "socket", "root", None)]


def test_access_list_shows_both_sources(site: dict[str, Any]) -> None:
    rows = json.loads(cli(site["env"], "--format", "json", "access", "list").stdout)
    assert {(r["group"], r["role"], r["company"], r["source"]) for r in rows} == {
        ("mft-viewers", "viewer", None, "multiflexi.conf"),
        ("mft-acme-ops", "operator", "acme", "multiflexi.conf"),
        ("mft-globex-ops", "operator", "globex", "database"),
        ("mft-acme-admins", "admin", "acme", "database"),
    }


def _start_as_user(user: str, socket: str, body: str) -> subprocess.Popen[str]:
    pw = pwd.getpwnam(user)
    groups = os.getgrouplist(user, pw.pw_gid)
    code = textwrap.dedent(f"""
        import json, os, sys
        from multiflexi.client import Client
        os.setgroups({groups!r}); os.setgid({pw.pw_gid}); os.setuid({pw.pw_uid})
        out = {{}}
        c = Client({socket!r}, timeout=20)
        c.__enter__()
    """) + textwrap.dedent(body) + "\nprint(json.dumps(out, default=str))\n"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _wait_line(proc: subprocess.Popen[str], text: str) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert text in line, line + (proc.stderr.read() if proc.stderr else "")



def test_the_cli_says_who_may_use_the_database_directly(site: dict[str, Any],
                                                        mf_env: Env) -> None:
    """alice (an operator) runs multiflexi-cli: the direct-database commands are refused
    saying why and what to use; run now goes through multiflexid and works."""
    pw = pwd.getpwnam("mftalice")
    code = textwrap.dedent(f"""
        import contextlib, getpass, io, json, os, sys  # imported while still root
        from multiflexid.cli.main import cli
        from multiflexid.cli.base import run_main
        os.environ.update({site['env']!r})
        os.setgroups({os.getgrouplist("mftalice", pw.pw_gid)!r})
        os.setgid({pw.pw_gid}); os.setuid({pw.pw_uid})
        os.environ["USER"] = os.environ["LOGNAME"] = "mftalice"
        out = {{}}
        for name, args in (("list", ["company", "list"]),
                           ("run", ["runtemplate", "run", "--id", "{site['rt']['acme']}"])):
            err, std = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
                code = run_main(cli, args)
            out[name] = [code, std.getvalue(), err.getvalue()]
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=90, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    code, _out, err = got["list"]
    assert code == 1, got
    assert err.startswith("multiflexi-cli: error: mftalice may not use the database "
                          "directly: only root and "), err
    assert f"({mf_env.data_dir} is theirs). Run it with sudo" in err
    assert "multiflexi-tui" in err and "runtemplate run" in err
    code, out, err = got["run"]
    assert code == 0 and "started by multiflexid" in out, got


def _company_ids(core: Core) -> dict[str, int]:
    from multiflexid.services.companies import get_company

    with core.db.read_session() as s:
        return {slug: get_company(s, slug).id for slug in ("acme", "globex")}


def _job_of_each(site: dict[str, Any]) -> dict[str, int]:
    d = site["daemon"]
    return {slug: d.wait_job(d.call("runtemplate.run", id=rt)["id"])["id"]
            for slug, rt in site["rt"].items()}


def _ledger(core: Core, rows: list[tuple[int, int, str]]) -> list[int]:
    """Action runs (company id, job id, state) in the delivery ledger, in this order."""
    from multiflexid.store.orm import ActionRun

    with core.db.session() as s:
        runs = [ActionRun(job_id=job, company_id=company, module="WebHook", trigger="failure",
                          config={}, state=state, result="HTTP 500")
                for company, job, state in rows]
        s.add_all(runs)
        s.flush()
        return [r.id for r in runs]


def test_a_run_of_a_company_one_may_not_see_is_not_found_and_left_alone(
        site: dict[str, Any], core: Core) -> None:
    """carol (operator of globex) asks to retry acme's runs: "not found", word for word as
    for an id that does not exist, whatever the run's state; the runs are not touched.
    bob (viewer of every company) is told he needs operator; alice (operator of acme)
    retries it."""
    from multiflexid.store.orm import ActionRun

    company, job = _company_ids(core), _job_of_each(site)
    failed, done = _ledger(core, [(company["acme"], job["acme"], "failed"),
                                  (company["acme"], job["acme"], "succeeded")])
    got = as_user("mftcarol", site["socket"], f"""
        attempt("failed", "action_run.retry", id={failed})
        attempt("done", "action_run.retry", id={done})
        attempt("none", "action_run.retry", id=999999)
    """)
    assert got["none"] == {"error": "not_found", "message": "no action run with id 999999"}
    assert got["failed"] == {"error": "not_found", "message": f"no action run with id {failed}"}
    assert got["done"] == {"error": "not_found", "message": f"no action run with id {done}"}
    bob = as_user("mftbob", site["socket"], f'attempt("failed", "action_run.retry", id={failed})')
    assert bob["failed"]["message"] == ("action_run.retry needs role operator on company "
                                        "acme; mftbob has role viewer there")
    with core.db.read_session() as s:
        run = s.get(ActionRun, failed)
        assert run is not None and (run.state, run.result) == ("failed", "HTTP 500")
    alice = as_user("mftalice", site["socket"],
                    f'attempt("failed", "action_run.retry", id={failed})')
    assert alice["failed"]["ok"]["state"] == "pending"
    assert alice["failed"]["ok"]["result"].startswith("retry requested by mftalice")


def test_lists_of_a_restricted_user_come_in_full_pages(site: dict[str, Any],
                                                       core: Core) -> None:
    """carol sees globex only. 100 rows of acme lie between globex's in the ledger and the
    audit trail: her pages are full and paging reaches the last of globex's rows."""
    from multiflexid.store.orm import AuditEntry
    from multiflexid.store.types import utcnow

    company, job = _company_ids(core), _job_of_each(site)
    order = [("globex" if i % 5 == 0 else "acme") for i in range(125)]  # 25 of globex
    runs = _ledger(core, [(company[c], job[c], "succeeded") for c in order])
    with core.db.session() as s:
        entries = [AuditEntry(at=utcnow(), user="root", via="cli", entity="company",
                              entity_id=company[c], company_id=company[c], action="changed",
                              summary=f"row {i}", diff={}) for i, c in enumerate(order)]
        s.add_all(entries)
        s.flush()
        audit_ids = [e.id for e in entries]
    got = as_user("mftcarol", site["socket"], """
        for method in ("action_run.list", "audit.list"):
            pages, before = [], None
            while len(pages) < 10:
                page = c.call_with(method, {"limit": 10, **({"before_id": before}
                                                            if before else {})})
                pages.append([[i["id"], i["company_id"]] for i in page["items"]])
                before = page["next_before_id"]
                if before is None:
                    break
            out[method] = pages
    """)
    mine = [r for r, c in zip(runs, order, strict=True) if c == "globex"][::-1]
    pages = got["action_run.list"]
    assert [len(p) for p in pages][:2] == [10, 10], pages
    assert [i for p in pages for i, _ in p] == mine  # the other job's runs: none here
    audit_pages = got["audit.list"]
    assert [len(p) for p in audit_pages][:2] == [10, 10], audit_pages
    shown = [i for p in audit_pages for i, _ in p]
    assert {c for p in audit_pages for _, c in p} == {company["globex"]}
    mine_audit = [a for a, c in zip(audit_ids, order, strict=True) if c == "globex"][::-1]
    assert shown[:len(mine_audit)] == mine_audit
