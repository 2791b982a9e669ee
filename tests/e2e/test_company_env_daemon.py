"""A company's environment in a real job: the real multiflexi-cli sets it, the real daemon
runs the job natively, and what the job prints shows the values — the secret one masked in
its output, its record and the database. Then a bulk run through the daemon. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from sqlalchemy import select

from multiflexid.core import Core
from multiflexid.store.orm import CompanyEnv, JobOutput
from tests.conftest import Env
from tests.support.daemon import program, running_daemon
from tests.support.factory import make_template

PIN = "Pin-24680-Secret"


def cli(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([program("multiflexi-cli"), *args], env={**os.environ, **env.vars()},
                          capture_output=True, text=True, timeout=60, check=False)


def test_company_environment_reaches_a_real_job(mf_env: Env, core: Core,
                                                tmp_path: Path) -> None:
    rt = make_template(core, company="acme", name="env", tags=["nightly"],
                       config={"SCRIPT": "echo url=$ERP_URL pin=$ERP_PIN level=$LEVEL"})
    make_template(core, company="globex", name="other", config={"SCRIPT": "echo g=$ERP_URL"})
    for args in (("ERP_URL=https://erp.acme", "LEVEL=company"), ("ERP_PIN=" + PIN, "--secret")):
        r = cli(mf_env, "company", "env", "set", "--company", "acme", *args)
        assert r.returncode == 0, r.stderr
    r = cli(mf_env, "runtemplate", "set-config", "--id", str(rt), "LEVEL=template")
    assert r.returncode == 0, r.stderr
    with running_daemon(mf_env.vars(), tmp_path) as d:
        r = cli(mf_env, "runtemplate", "run", "--id", str(rt), "--wait")
        assert r.returncode == 0, r.stderr
        assert r.stdout == "url=https://erp.acme pin=******** level=template\n"
        job = json.loads(cli(mf_env, "--format", "json", "job", "list").stdout)[0]
        shown = json.loads(cli(mf_env, "--format", "json", "job", "show", "--id",
                               str(job["id"])).stdout)
        assert (shown["environment"]["ERP_URL"], shown["environment"]["ERP_PIN"]) == (
            "https://erp.acme", "********")
        assert PIN not in json.dumps(shown)
        # a bulk run with the daemon up goes through it: the jobs start at once
        r = cli(mf_env, "--format", "json", "runtemplate", "bulk", "run", "--tag", "nightly")
        assert r.returncode == 0, r.stderr
        ran = json.loads(r.stdout)["jobs"]
        assert len(ran) == 1
        done = d.wait_job(ran[0])
        assert (done["state"], done["schedule_type"]) == ("succeeded", "adhoc-cli")
        assert d.output(ran[0]) == "url=https://erp.acme pin=******** level=template\n"
    with core.db.session() as s:
        stored = b"".join(s.scalars(select(JobOutput.data)))
        assert b"https://erp.acme" in stored and PIN.encode() not in stored
        row = s.scalar(select(CompanyEnv).where(CompanyEnv.key == "ERP_PIN"))
        assert row is not None and row.encrypted and PIN not in row.value
