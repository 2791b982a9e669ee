"""Alembic migrations: an empty database reaches head, the models match, upgrades are safe."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from multiflexid.store.db import Database
from multiflexid.store.orm import Base
from multiflexid.store.search import not_modelled
from tests.integration.conftest import dump_tables


def _head() -> str:
    head = Database("sqlite://").head_revision()
    assert head
    return head


def test_upgrading_an_empty_database_reaches_head(
    mfcli, fresh_db_url: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_db_url(migrated=False)
    db = Database(url)
    try:
        assert db.current_revision() is None
        monkeypatch.setenv("MULTIFLEXI_DATABASE_URL", url)
        r = mfcli("db", "upgrade", "--format", "json")
        assert r.code == 0, r.err
        assert (r.json["before"], r.json["after"]) == (None, _head())
        assert db.current_revision() == _head()
        tables = set(inspect(db.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
    finally:
        db.dispose()


def test_the_first_command_on_a_new_database_migrates_it(
    mfcli, fresh_db_url: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_db_url(migrated=False)
    monkeypatch.setenv("MULTIFLEXI_DATABASE_URL", url)
    r = mfcli("company", "list", "--format", "json")
    assert (r.code, r.json) == (0, [])
    db = Database(url)
    assert db.current_revision() == _head()
    db.dispose()


# SQLite cannot reflect expression indexes (lower(slug)): there only PostgreSQL compares them.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based")
def test_models_match_the_migrations(db_url: str) -> None:
    """What autogenerate would write for the models against the migrated schema: nothing
    (the text search's virtual table and trigram index are the migration's alone)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={
                "compare_type": True,
                "include_name": lambda name, _type, _parents: not not_modelled(name)})
            diff = compare_metadata(ctx, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_db_upgrade_twice_is_a_no_op(mfcli, mf_env) -> None:
    assert mfcli("company", "create", "--name", "Acme", "--slug", "acme").code == 0
    before = dump_tables(mf_env.db_url)
    for _ in range(2):
        r = mfcli("db", "upgrade")
        assert (r.code, r.err) == (0, "")
        assert r.out.endswith(f": already at {_head()}\n")
    db = Database(mf_env.db_url)
    try:
        assert db.upgrade() == (_head(), _head())
    finally:
        db.dispose()
    assert dump_tables(mf_env.db_url) == before


def test_a_database_at_another_revision_is_refused_clearly(mfcli, mf_env) -> None:
    assert mfcli("company", "create", "--name", "Acme", "--slug", "acme").code == 0
    # An older revision this version knows: upgrade it. An unknown one: a newer MultiFlexi
    # migrated it, and this one must not touch it.
    older = (f"is at schema revision 0001, this version needs {_head()}: "
             "run `multiflexi-cli db upgrade`")
    newer = (f"is at schema revision 0099_future, which this version of MultiFlexi does not "
             f"know (it needs {_head()}): a newer MultiFlexi migrated it; upgrade this "
             "installation")
    for revision, message in (("0001", older), ("0099_future", newer)):
        _refused_at(mfcli, mf_env.db_url, revision, message)


def _refused_at(mfcli: Any, url: str, revision: str, message: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    engine.dispose()
    before = dump_tables(url)
    for args in (("company", "list"), ("company", "create", "--name", "G", "--slug", "g"),
                 ("runtemplate", "list"), ("job", "list")):
        r = mfcli(*args)
        assert r.code == 1, args
        assert r.out == ""
        assert r.err.startswith("multiflexi-cli: error: database ")
        assert r.err.endswith(message + "\n")
        assert r.err.count("\n") == 1
    r = mfcli("--format", "json", "company", "list")
    assert r.code == 1
    assert r.json["error"]["name"] == "storage_error"
    assert r.json["error"]["message"].endswith(message)

    status = mfcli("status", "--format", "json")
    assert status.code == 0
    assert (status.json["database"]["revision"], status.json["database"]["up_to_date"]) == (
        revision, False)
    assert "counts" not in status.json
    assert f"schema    {revision} (needs {_head()})" in mfcli("status").out

    if revision == "0001":
        return  # (a faked older revision cannot really be upgraded: its tables are newer)
    r = mfcli("db", "upgrade")
    assert r.code == 1
    assert r.err.startswith("multiflexi-cli: error: database ")
    assert f"Can't locate revision identified by '{revision}'; was it upgraded by a newer " \
           "MultiFlexi?" in r.err
    assert dump_tables(url) == before


def test_the_database_keeps_slugs_and_uuids_unique_regardless_of_case(db_url: str) -> None:
    """Not only the CLI's check: two writers racing cannot make case twins either."""
    engine = create_engine(db_url)
    uuid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO company (name, slug, enabled, created_at, updated_at)"
                              " VALUES ('Acme', 'acme', true, :t, :t)"), {"t": _NOW})
            _insert_app(conn, uuid)
        for sql, params in (
            ("INSERT INTO company (name, slug, enabled, created_at, updated_at) "
             "VALUES ('Acme 2', 'ACME', true, :t, :t)", {"t": _NOW}),
            (_APP_INSERT, {"t": _NOW, "uuid": uuid.upper()}),
        ):
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(text(sql), params)
    finally:
        engine.dispose()


_NOW = "2026-01-01 00:00:00.000000"
_APP_INSERT = (
    "INSERT INTO application (uuid, name, description, executable, cmdparams, enabled, "
    "requirements, tags, localized, extra, source_format, created_at, updated_at) VALUES "
    "(:uuid, 'App', '', 'true', '', true, '[]', '[]', '{}', '{}', '3.4', :t, :t)"
)


def _insert_app(conn: Any, uuid: str) -> None:
    conn.execute(text(_APP_INSERT), {"t": _NOW, "uuid": uuid})


def test_upgrade_resolves_case_twins_made_before_and_says_so(
    fresh_db_url: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    """A database from before slugs and uuids matched regardless of case may hold twins;
    the upgrade keeps the oldest as it is, renames the others' slugs (saying so), and takes
    the uuid from the younger of two apps, which stay usable by id."""
    url = fresh_db_url(migrated=False)
    db = Database(url)
    uuid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    try:
        db.upgrade("0002")
        with db.engine.begin() as conn:
            for slug in ("acme", "ACME", "globex", "Acme", "acme-2"):
                conn.execute(text(
                    "INSERT INTO company (name, slug, enabled, created_at, updated_at) "
                    "VALUES (:s, :s, true, :t, :t)"), {"s": slug, "t": _NOW})
            for value in (uuid, uuid.upper(), None):
                _insert_app(conn, value)
        with caplog.at_level("WARNING"):
            assert db.upgrade() == ("0002", _head())
        with db.engine.connect() as conn:
            slugs = conn.execute(text("SELECT id, slug FROM company ORDER BY id")).all()
            uuids = conn.execute(text("SELECT id, uuid FROM application ORDER BY id")).all()
    finally:
        db.dispose()
    assert [tuple(r) for r in slugs] == [(1, "acme"), (2, "ACME-2-2"), (3, "globex"),
                                         (4, "Acme-4"), (5, "acme-2")]
    assert [tuple(r) for r in uuids] == [(1, uuid), (2, None), (3, None)]
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "company 2: slug 'ACME' is now 'ACME-2-2' (it differed only in case from 'acme', and "
        "slugs now match regardless of case)",
        "company 4: slug 'Acme' is now 'Acme-4' (it differed only in case from 'acme', and "
        "slugs now match regardless of case)",
        f"application 2: uuid {uuid.upper()} removed (application 1 has it in other case; "
        "uuids now match regardless of case); it stays usable by its id",
    ]


def test_upgrade_tells_the_trail_which_template_each_entry_concerns(
        fresh_db_url: Callable[..., str], tmp_path: Any) -> None:
    """Entries recorded before audit.runtemplate_id existed get it: the template's own, its
    jobs' and its actions'. On PostgreSQL the trail is append-only again afterwards."""
    from datetime import UTC, datetime

    from multiflexid.crypto import SecretBox
    from multiflexid.domain.appjson import parse_app
    from multiflexid.services import actions, apps, companies, jobs, runtemplates
    from multiflexid.store.transitions import JobTransitions
    from tests.support.factory import shell_app

    url = fresh_db_url(migrated=False)
    db = Database(url)
    box = SecretBox(tmp_path / "key")
    now = datetime.now(UTC)
    try:
        db.upgrade("0008")  # the revision before the one under test
        with db.session() as s:  # no actor: nothing is recorded by the (newer) code
            app, _ = apps.upsert_app(s, parse_app(json.dumps(shell_app()))[0])
            company = companies.create_company(s, name="Acme", slug="acme")
            rt = runtemplates.create_runtemplate(s, app, company, box, now, name="t")
            job = jobs.create_job(s, JobTransitions(), rt, schedule_type="adhoc-cli",
                                  launched_by="root", after=now, box=box)
            action = actions.add_action(s, box, module="WebHook", trigger="failure",
                                        values={"uri": "http://x.example/"}, runtemplate=rt)
            ids = {"runtemplate": rt.id, "job": job.id, "action": action.id,
                   "company": company.id}
        with db.engine.begin() as conn:
            for entity in ("runtemplate", "job", "action", "company"):
                conn.execute(text(
                    "INSERT INTO audit (at, \"user\", via, entity, entity_id, company_id, "
                    "action, summary, diff) VALUES (:t, 'root', 'cli', :e, :i, :c, 'changed', "
                    "'', '{}')"), {"t": _NOW, "e": entity, "i": ids[entity],
                                   "c": ids["company"]})
        db.upgrade()
        with db.engine.connect() as conn:
            got = dict(conn.execute(text("SELECT entity, runtemplate_id FROM audit")).all())
        assert got == {"runtemplate": ids["runtemplate"], "job": ids["runtemplate"],
                       "action": ids["runtemplate"], "company": None}
        if db.dialect == "postgresql":
            with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
                conn.execute(text("UPDATE audit SET summary = 'x'"))
    finally:
        db.dispose()
