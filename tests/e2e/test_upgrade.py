"""Upgrading, removing and purging the package in a booted Debian 12 (systemd-nspawn).

Version N is the .deb of this checkout. Version N+1 is built from a copy of the same
tracked files with the version bumped (shared/multiflexi/__init__.py and a new
debian/changelog entry) and one more Alembic migration, as a release that changes the
schema would be. In a fresh container: install N, make data (a company, a secret
credential, a template, a job) and change the configuration as an admin would, then
`apt-get install ./multiflexi_N+1.deb`: data, secret.key and configuration are kept, the
database is migrated once (by the postinst, before the daemon starts), and the daemon
runs the new code. Then `apt-get remove` (data and configuration stay) and `apt-get
purge` (gone: what the README says purge removes).

Root only (marked ``root_only``); timings go to the e2e timings at the end of the run.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import debs as debbuild
from tests.support.booted import (
    ADMIN,
    APPS_DIR,
    COMPANY,
    PROBE_TYPE,
    cli,
    cli_json,
    install_deb,
    installed_machine,
    job,
    journal,
    messages,
    template,
    timed,
    unit,
    wait_active,
)
from tests.support.nspawn import Machine

__all__ = ["timed"]  # the autouse fixture that times each test

pytestmark = [pytest.mark.e2e, pytest.mark.root_only]

CONF = "/etc/multiflexi/multiflexi.conf"
DATA = "/var/lib/multiflexi"
NEXT_REVISION = "e2e_next"
NEXT_MIGRATION = '''"""The migration only version N+1 has (tests/e2e/test_upgrade.py)

Revision ID: {revision}
Revises: {down}
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("e2e_upgrade", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("note", sa.String(100), nullable=False))
    op.execute("INSERT INTO e2e_upgrade (note) VALUES ('migrated')")


def downgrade() -> None:
    op.drop_table("e2e_upgrade")
'''


def head_revision(tree: Path) -> str:
    """The newest Alembic revision of a source tree (the one nothing revises)."""
    revisions, revised = set(), set()
    for path in (tree / "multiflexid/store/migrations/versions").glob("*.py"):
        text = path.read_text()
        if found := re.search(r"""^revision = ["'](.+)["']""", text, re.M):
            revisions.add(found.group(1))
        if found := re.search(r"""^down_revision = ["'](.+)["']""", text, re.M):
            revised.add(found.group(1))
    heads = revisions - revised
    assert len(heads) == 1, f"not one head revision: {heads}"
    return heads.pop()


@pytest.fixture(scope="module")
def next_version(require_root: None, tmp_path_factory: pytest.TempPathFactory,
                 timings: dict[str, float]) -> tuple[str, str, Path]:
    """(version N+1, the schema revision it had before, its .deb)."""
    out = tmp_path_factory.mktemp("deb-next")
    src = out / "src"
    debbuild.copy_checkout(src)
    version = debbuild.next_version(debbuild.project_version(src))
    debbuild.bump_version(src, version)
    before = head_revision(src)
    (src / "multiflexid/store/migrations/versions/9999_e2e_next.py").write_text(
        NEXT_MIGRATION.format(revision=NEXT_REVISION, down=before))
    try:
        built, seconds = debbuild.build(src, out)
    except debbuild.BuildError as exc:
        pytest.fail(str(exc))
    timings[f"build version N+1 ({version})"] = seconds
    return version, before, built[0]


@pytest.fixture(scope="module")
def machine(booted_tree: Path, debs: list[Path], machine_lock: None,
            tmp_path_factory: pytest.TempPathFactory,
            timings: dict[str, float]) -> Iterator[Machine]:
    """Booted, version N installed, an admin; destroyed at the end."""
    with installed_machine(booted_tree, debs[0], tmp_path_factory.mktemp("booted-upgrade"),
                           f"mf-up-{uuid.uuid4().hex[:6]}", timings,
                           "install version N (upgrade test)") as m:
        yield m


def status(m: Machine) -> Any:
    return cli_json(m, "status")


def sha256(m: Machine, inside: str) -> str:
    return hashlib.sha256(m.path(inside).read_bytes()).hexdigest()


def test_upgrade_keeps_data_secret_and_config_and_runs_the_new_code(
        machine: Machine, next_version: tuple[str, str, Path],
        timings: dict[str, float]) -> None:
    m = machine
    version, before_revision, deb = next_version
    old_version = debbuild.project_version()
    # What an admin has after a while with version N.
    cli(m, "application", "import-json", "--file", APPS_DIR)
    cli(m, "company", "create", "--name", "Acme s.r.o.", "--slug", COMPANY)
    cli(m, "credential-type", "import-json", "--file", PROBE_TYPE)
    cli(m, "credential", "create", "--company", COMPANY, "--type", "Probe", "--name", "probe",
        "--field", "PASSWORD=s3cret-before-upgrade")
    rt = template(m, "nightly", "echo report done", interv="d")
    ran = cli(m, "runtemplate", "run", "--id", str(rt), "--wait", user=ADMIN)
    first_job = int(re.findall(r"job (\d+) of run template", ran.stdout + ran.stderr)[0])
    conf = m.path(CONF)
    conf.write_text(conf.read_text().replace("# max_parallel = 4\n", "max_parallel = 3\n"))
    m.run(["systemctl", "restart", "multiflexid"])
    wait_active(m)
    was = status(m)
    assert was["daemon"]["max_parallel"] == 3
    assert was["database"]["revision"] == before_revision
    key_before, conf_before = sha256(m, f"{DATA}/secret.key"), conf.read_text()
    pid_before = unit(m, "MainPID")["MainPID"]
    upgrading_at = time.time()

    out = install_deb(m, deb, timings, f"upgrade to N+1 (apt-get install ./*_{version}_*.deb)")
    print(out)
    assert f"Unpacking multiflexi ({version}) over ({old_version})" in out
    # the postinst migrated the database once, before the new daemon started
    assert f"upgraded {before_revision} -> {NEXT_REVISION}" in out

    props = wait_active(m)
    assert props["MainPID"] != pid_before
    now = status(m)
    assert now["version"] == version
    assert now["daemon"]["version"] == version  # the new code runs
    assert now["daemon"]["max_parallel"] == 3  # its configuration kept
    assert now["database"]["revision"] == NEXT_REVISION
    assert now["database"]["up_to_date"] is True
    assert conf.read_text() == conf_before
    assert sha256(m, f"{DATA}/secret.key") == key_before
    shown = cli_json(m, "credential", "show", "--id", "1", "--reveal")
    assert "s3cret-before-upgrade" in json.dumps(shown)
    old = job(m, first_job)
    assert (old["state"], old["launched_by"]) == ("succeeded", ADMIN)
    assert "report done" in cli(m, "job", "output", "--id", str(first_job)).stdout
    # migrated once: by the postinst; the daemon found nothing to do
    said = messages(journal(m, "-u", "multiflexid", f"--since=@{int(upgrading_at)}"))
    assert not [s for s in said if s.startswith("database migrated")], said
    assert any(f"multiflexid {version} ready" in s for s in said), said
    assert m.run(["runuser", "-u", "multiflexi", "--", "python3", "-c",
                  "import sqlite3; print(sqlite3.connect('/var/lib/multiflexi/multiflexi.db')"
                  ".execute('SELECT count(*) FROM e2e_upgrade').fetchone()[0])"]
                 ).stdout.strip() == "1"
    # and the new version runs jobs
    again = cli(m, "runtemplate", "run", "--id", str(rt), "--wait", user=ADMIN)
    assert "report done" in again.stdout


def test_remove_keeps_data_and_purge_removes_what_the_readme_says(machine: Machine) -> None:
    m = machine
    m.sh("apt-get remove -y -q multiflexi", timeout=300)
    dpkg = m.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "multiflexi"]).stdout
    assert dpkg == "config-files"
    assert unit(m, "ActiveState", "LoadState") == {"ActiveState": "inactive",
                                                  "LoadState": "not-found"}
    assert m.run(["pgrep", "-u", "multiflexi"], check=False).stdout == ""
    for gone in ("/usr/lib/multiflexi", "/usr/bin/multiflexi-cli", "/usr/bin/multiflexid",
                 "/lib/systemd/system/multiflexid.service"):
        assert not m.path(gone).exists(), gone
    # README: "`apt remove` keeps configuration, data and the user"
    for kept in (CONF, f"{DATA}/multiflexi.db", f"{DATA}/secret.key"):
        assert m.path(kept).exists(), kept
    assert "max_parallel = 3\n" in m.path(CONF).read_text()
    assert m.run(["getent", "passwd", "multiflexi"], check=False).returncode == 0

    # README: "`apt purge` deletes /etc/multiflexi, /var/lib/multiflexi (the database and
    # secret.key) and the user and group" -- also while an admin is a member of the group
    assert "multiflexi" in m.run(["id", "-nG", ADMIN]).stdout.split()
    purged = m.sh("apt-get purge -y -q multiflexi", timeout=300)
    print(purged.stdout + purged.stderr)
    for gone in ("/etc/multiflexi", DATA, "/run/multiflexi",
                 "/etc/systemd/system/multi-user.target.wants/multiflexid.service"):
        assert not m.path(gone).exists(), gone
    assert m.run(["getent", "passwd", "multiflexi"], check=False).returncode == 2
    assert m.run(["getent", "group", "multiflexi"], check=False).returncode == 2
    assert "multiflexi" not in m.run(["id", "-nG", ADMIN]).stdout.split()
    dpkg = m.run(["dpkg-query", "-W", "-f=${db:Status-Status}", "multiflexi"],
                 check=False).stdout
    assert dpkg in ("not-installed", "")
    assert "warning" not in (purged.stdout + purged.stderr).lower()
