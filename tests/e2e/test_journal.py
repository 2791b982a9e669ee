"""A job's whole story in the real journal: ``journalctl MULTIFLEXI_JOB_ID=N``.

journald runs for real in a private mount namespace (tests/support/journal_ns.py); the
machine's own journal is not touched. Needs root (unshare, mount).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from multiflexid.core import Core
from tests.conftest import Env
from tests.support.factory import make_template

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.root_only


def test_journalctl_tells_the_jobs_whole_story(mf_env: Env, core: Core, tmp_path: Path) -> None:
    rt_id = make_template(core, company="acme", name="story",
                          config={"SCRIPT": "echo first line; echo second line >&2; exit 4"})
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({
        "env": mf_env.vars(), "workdir": str(tmp_path), "runtemplate_id": rt_id,
    }))
    proc = subprocess.run(
        ["unshare", "--mount", sys.executable, "-m", "tests.support.journal_ns", str(scenario)],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
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
