"""multiflexi-cli as an admin and a script use it: every command of CLI.md, its errors.

Contract (CLI.md): exit 0 on success, 1 on an error with one clear line on stderr, 2 on bad
usage; ``--format json`` prints one JSON document on stdout and nothing else.
"""

from __future__ import annotations

import getpass
import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest
from sqlalchemy.engine import make_url

import multiflexi
from multiflexid.cli.main import cli
from multiflexid.core import Core
from multiflexid.store.db import Database
from multiflexid.store.orm import Artifact
from tests.integration.conftest import DATA, dump_tables, row_counts
from tests.support.factory import shell_app

PROBE = "775ed801-2489-4981-bc14-d8a01cba1938"
CONTRACTS = "e0e20955-d71c-4003-85e5-7d65eb9da03f"


@pytest.fixture
def db_url(reused_db_url: str) -> str:
    """This module's tests share one database per backend, emptied before each test."""
    return reused_db_url


def one_line_error(r: Any, text: str) -> None:
    """Exit 1, one line on stderr naming the problem, nothing on stdout."""
    assert r.code == 1, (r.out, r.err)
    assert r.out == ""
    assert r.err == f"multiflexi-cli: error: {text}\n"


def json_error(r: Any, name: str, text: str) -> None:
    """In json mode the error is also the one JSON document on stdout."""
    assert r.code == 1, (r.out, r.err)
    assert json.loads(r.out) == {"error": {"name": name, "message": text}}
    assert r.err == f"multiflexi-cli: error: {text}\n"


def usage_error(r: Any, text: str) -> None:
    assert r.code == 2, (r.out, r.err)
    assert r.out == ""
    assert "Usage: multiflexi-cli" in r.err
    assert f"Error: {text}" in r.err


@pytest.fixture
def world(mfcli, examples_dir: Path) -> dict[str, int]:
    """Two apps, the credential types, companies acme and globex."""
    r = mfcli("application", "import-json",
              "--file", str(examples_dir / "probe.multiflexi.app.json"),
              "--file", str(examples_dir / "contract_to_invoices.multiflexi.app.json"))
    assert r.code == 0, r.err
    r = mfcli("credential-type", "import-json", "--file",
              str(examples_dir / "credential-types"))
    assert r.code == 0, r.err
    ids = {}
    for slug, name in (("acme", "Acme s.r.o."), ("globex", "Globex a.s.")):
        r = mfcli("company", "create", "--name", name, "--slug", slug, "--format", "json")
        assert r.code == 0, r.err
        ids[slug] = r.json["id"]
    return ids


def make_template(mfcli, company: str = "acme", name: str = "probe", *args: str) -> int:
    r = mfcli("runtemplate", "create", "--app", PROBE, "--company", company, "--name", name,
              "--format", "json", *args)
    assert r.code == 0, r.err
    return int(r.json["id"])


# --- the program as a whole ---------------------------------------------------------------------


def test_help_and_version(mfcli_nodb) -> None:
    mfcli = mfcli_nodb
    r = mfcli("--help")
    assert r.code == 0
    for group in ("application", "company", "credential", "credential-type", "runtemplate",
                  "job", "artifact", "queue", "status", "db"):
        assert f"  {group} " in r.out
    r = mfcli("--version")
    assert (r.code, r.out) == (0, f"multiflexi-cli, version {multiflexi.__version__}\n")
    r = mfcli("runtemplate", "set-config", "--help")
    assert r.code == 0 and "--unset KEY" in r.out


def _leaves(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.extend(_leaves(cmd, (*path, name)))
        else:
            out.append((*path, name))
    return out


def test_every_command_takes_format_after_its_name(mfcli_nodb) -> None:
    mfcli = mfcli_nodb
    leaves = _leaves(cli)
    assert ("status",) in leaves and ("application", "import-json") in leaves
    for path in leaves:
        r = mfcli(*path, "--format", "json", "--help")
        assert r.code == 0, (path, r.err)


def test_bad_usage_exits_2(mfcli_nodb) -> None:
    mfcli = mfcli_nodb
    usage_error(mfcli("nope"), "No such command 'nope'.")
    usage_error(mfcli("company", "nope"), "No such command 'nope'.")
    usage_error(mfcli("company", "show"), "give exactly one of --id or --slug")
    usage_error(mfcli("company", "show", "--id", "1", "--slug", "acme"),
                "give exactly one of --id or --slug")
    usage_error(mfcli("application", "show"), "give exactly one of --id or --uuid")
    usage_error(mfcli("company", "create", "--name", "X"), "Missing option '--slug'.")
    usage_error(mfcli("job", "show", "--id", "one"),
                "Invalid value for '--id': 'one' is not a valid integer.")
    usage_error(mfcli("job", "list", "--state", "done"), "Invalid value for '--state'")
    usage_error(mfcli("runtemplate", "preview", "--id", "1", "--count", "0"),
                "Invalid value for '--count'")
    usage_error(mfcli("--format", "yaml", "status"), "Invalid value for '--format'")


def test_bad_usage_in_json_mode_still_prints_one_json_document(mfcli_nodb) -> None:
    mfcli = mfcli_nodb
    r = mfcli("--format", "json", "company", "show")
    assert r.code == 2
    assert json.loads(r.out) == {"error": {"name": "usage",
                                           "message": "give exactly one of --id or --slug"}}
    r = mfcli("job", "list", "--format", "json", "--state", "done")
    assert r.code == 2
    assert json.loads(r.out)["error"]["name"] == "usage"


def test_group_colon_command_and_run_template_aliases(mfcli, world: dict[str, int]) -> None:
    rt = make_template(mfcli)
    for args in (("application:list",), ("company:list",), ("credential-type:list",),
                 ("run-template", "list"), ("run-template:list",), ("runtemplate:list",),
                 ("job:list",), ("queue:list",), ("credential:list",)):
        r = mfcli("--format", "json", *args)
        assert r.code == 0, (args, r.err)
        assert isinstance(r.json, (list, dict))
    shown = mfcli("run-template:show", "--id", str(rt), "--format", "json")
    assert shown.json["name"] == "probe"
    assert mfcli("company:show", "--slug", "acme", "--format", "json").json["id"] == \
        world["acme"]


# --- unknown ids: one clear line, and json mode prints one document ------------------------------


UNKNOWN = [
    (("application", "show", "--id", "99"), "no application with id or uuid '99'"),
    (("application", "show", "--uuid", "nope"), "no application with id or uuid 'nope'"),
    (("application", "export-json", "--id", "99"), "no application with id or uuid '99'"),
    (("application", "update", "--id", "99", "--disable"), "no application with id or uuid '99'"),
    (("application", "remove", "--id", "99"), "no application with id or uuid '99'"),
    (("company", "show", "--id", "99"), "no company with id or slug '99'"),
    (("company", "show", "--slug", "initech"), "no company with id or slug 'initech'"),
    (("company", "update", "--slug", "initech", "--name", "I"),
     "no company with id or slug 'initech'"),
    (("company", "remove", "--slug", "initech"), "no company with id or slug 'initech'"),
    (("credential-type", "show", "--code", "Nope"),
     "no credential type 'Nope' (known: AbraFlexi, Office365, Probe)"),
    (("credential", "create", "--company", "acme", "--type", "Nope", "--name", "n"),
     "no credential type 'Nope' (known: AbraFlexi, Office365, Probe)"),
    (("credential", "create", "--company", "initech", "--type", "Probe", "--name", "n"),
     "no company with id or slug 'initech'"),
    (("credential", "list", "--company", "initech"), "no company with id or slug 'initech'"),
    (("credential", "show", "--id", "99"), "no credential with id '99'"),
    (("credential", "update", "--id", "99", "--field", "A=1"), "no credential with id '99'"),
    (("credential", "remove", "--id", "99"), "no credential with id '99'"),
    (("runtemplate", "create", "--app", "99", "--company", "acme", "--name", "x"),
     "no application with id or uuid '99'"),
    (("runtemplate", "create", "--app", PROBE, "--company", "initech", "--name", "x"),
     "no company with id or slug 'initech'"),
    (("runtemplate", "list", "--company", "initech"), "no company with id or slug 'initech'"),
    (("runtemplate", "list", "--app", "nope"), "no application with id or uuid 'nope'"),
    (("runtemplate", "show", "--id", "99"), "no run template with id '99'"),
    (("runtemplate", "update", "--id", "99", "--interv", "d"), "no run template with id '99'"),
    (("runtemplate", "remove", "--id", "99"), "no run template with id '99'"),
    (("runtemplate", "set-config", "--id", "99", "A=1"), "no run template with id '99'"),
    (("runtemplate", "assign-credential", "--id", "99", "--credential", "1"),
     "no run template with id '99'"),
    (("runtemplate", "unassign-credential", "--id", "99", "--credential", "1"),
     "no run template with id '99'"),
    (("runtemplate", "env", "--id", "99"), "no run template with id '99'"),
    (("runtemplate", "preview", "--id", "99"), "no run template with id '99'"),
    (("runtemplate", "run", "--id", "99"), "no run template with id '99'"),
    (("job", "create", "--template", "99"), "no run template with id '99'"),
    (("job", "show", "--id", "99"), "no job with id '99'"),
    (("job", "output", "--id", "99"), "no job with id '99'"),
    (("job", "list", "--company", "initech"), "no company with id or slug 'initech'"),
    (("artifact", "list", "--job", "99"), "no job with id '99'"),
    (("artifact", "get", "--id", "99"), "no artifact with id 99"),
]


def test_unknown_ids_give_one_clear_line(mfcli, world: dict[str, int]) -> None:
    rt = make_template(mfcli)
    groups = set()
    for args, message in UNKNOWN:
        one_line_error(mfcli(*args), message)
        if args[0] not in groups:  # json mode: once per command group is enough
            groups.add(args[0])
            json_error(mfcli("--format", "json", *args), "not_found", message)
            json_error(mfcli(*args, "--format", "json"), "not_found", message)
    one_line_error(mfcli("runtemplate", "assign-credential", "--id", str(rt), "--credential",
                         "99"), "no credential with id '99'")


# --- companies ----------------------------------------------------------------------------------


def test_company_lifecycle(mfcli, mf_env) -> None:
    r = mfcli("company", "create", "--name", "Acme s.r.o.", "--slug", "acme", "--ic",
              "12345678", "--dic", "CZ12345678", "--email", "office@acme.example")
    assert (r.code, r.out) == (0, "created company 1 'acme'\n")
    r = mfcli("company", "create", "--name", "Globex", "--slug", "globex", "--disabled",
              "--format", "json")
    assert r.code == 0
    globex = r.json
    assert (globex["enabled"], globex["ic"], globex["email"]) == (False, None, None)
    shown = mfcli("company", "show", "--slug", "acme", "--format", "json").json
    assert {k: shown[k] for k in ("id", "name", "slug", "ic", "dic", "email", "enabled")} == {
        "id": 1, "name": "Acme s.r.o.", "slug": "acme", "ic": "12345678", "dic": "CZ12345678",
        "email": "office@acme.example", "enabled": True}
    text = mfcli("company", "show", "--id", "1").out
    assert "slug     acme" in text and "dic      CZ12345678" in text

    r = mfcli("company", "update", "--slug", "acme", "--new-slug", "acme-sro", "--name",
              "ACME", "--email", "", "--format", "json")
    assert r.code == 0, r.err
    assert (r.json["slug"], r.json["name"], r.json["email"]) == ("acme-sro", "ACME", "")
    r = mfcli("company", "update", "--id", str(globex["id"]), "--enabled")
    assert r.code == 0 and "enabled  yes" in r.out
    listed = mfcli("company", "list", "--format", "json").json
    assert [(c["id"], c["slug"], c["enabled"]) for c in listed] == [
        (1, "acme-sro", True), (2, "globex", True)]
    text = mfcli("company", "list").out.splitlines()
    assert text[0].split() == ["ID", "SLUG", "NAME", "IC", "EMAIL", "ENABLED"]

    r = mfcli("company", "remove", "--slug", "globex")
    assert (r.code, r.out) == (0, "removed company 2 'globex'\n")
    assert row_counts(mf_env.db_url)["company"] == 1


def test_company_slug_validation_and_duplicates(mfcli, mf_env) -> None:
    assert mfcli("company", "create", "--name", "Acme", "--slug", "acme").code == 0
    assert mfcli("company", "create", "--name", "Globex", "--slug", "globex").code == 0
    before = dump_tables(mf_env.db_url)
    one_line_error(mfcli("company", "create", "--name", "Acme 2", "--slug", "acme"),
                   "slug: a company with slug 'acme' already exists")
    json_error(mfcli("--format", "json", "company", "create", "--name", "A", "--slug", "acme"),
               "conflict", "slug: a company with slug 'acme' already exists")
    bad = ("slug: {!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter "
           "or digit")
    for slug in ("two words", "-dash", "", "é-acme", "x" * 65, "a/b"):
        one_line_error(mfcli("company", "create", "--name", "X", "--slug", slug),
                       bad.format(slug.strip()))
    one_line_error(mfcli("company", "create", "--name", "X", "--slug", "42"),
                   "slug: '42' must not be all digits (it would look like an id)")
    one_line_error(mfcli("company", "create", "--name", " ", "--slug", "blank"),
                   "name: must not be empty")
    one_line_error(mfcli("company", "create", "--name", "X", "--slug", "x", "--email", "nope"),
                   "email: 'nope' is not an e-mail address")
    one_line_error(mfcli("company", "update", "--slug", "globex", "--new-slug", "acme"),
                   "slug: a company with slug 'acme' already exists")
    one_line_error(mfcli("company", "update", "--slug", "globex", "--new-slug", "bad slug"),
                   bad.format("bad slug"))
    assert dump_tables(mf_env.db_url) == before
    # Keeping one's own slug is not a clash.
    assert mfcli("company", "update", "--slug", "acme", "--new-slug", "acme").code == 0


def test_slugs_match_regardless_of_case(mfcli, mf_env, world: dict[str, int]) -> None:
    """``--company ACME`` is acme; a second company whose slug differs only in case is
    refused, as is renaming one onto another's slug in other case."""
    shown = mfcli("company", "show", "--slug", "ACME", "--format", "json").json
    assert (shown["id"], shown["slug"]) == (world["acme"], "acme")
    before = dump_tables(mf_env.db_url)
    clash = ("slug: a company with slug 'acme' already exists (slugs match regardless of "
             "case)")
    one_line_error(mfcli("company", "create", "--name", "Acme again", "--slug", "ACME"), clash)
    json_error(mfcli("--format", "json", "company", "create", "--name", "A", "--slug", "Acme"),
               "conflict", clash)
    one_line_error(mfcli("company", "update", "--slug", "globex", "--new-slug", "aCmE"), clash)
    assert dump_tables(mf_env.db_url) == before
    r = mfcli("company", "update", "--slug", "GLOBEX", "--new-slug", "Globex", "--format",
              "json")
    assert (r.code, r.json["slug"]) == (0, "Globex")  # its own slug in other case is fine
    rt = make_template(mfcli, "ACME")
    assert mfcli("runtemplate", "show", "--id", str(rt), "--format",
                 "json").json["company"] == "acme"
    assert [t["id"] for t in mfcli("runtemplate", "list", "--company", "Acme", "--format",
                                   "json").json] == [rt]
    r = mfcli("credential", "create", "--company", "globex", "--type", "Probe", "--name", "p",
              "--field", "PASSWORD=pw-123", "--format", "json")
    assert (r.code, r.json["company"]) == (0, "Globex")
    assert mfcli("job", "list", "--company", "aCME", "--format", "json").code == 0
    one_line_error(mfcli("company", "show", "--slug", "acme-not"),
                   "no company with id or slug 'acme-not'")


def test_application_uuids_match_regardless_of_case(mfcli, mf_env, world: dict[str, int],
                                                    examples_dir: Path, tmp_path: Path) -> None:
    upper = PROBE.upper()
    shown = mfcli("application", "show", "--uuid", upper, "--format", "json").json
    assert (shown["id"], shown["uuid"]) == (1, PROBE)
    assert json.loads(mfcli("application", "export-json", "--uuid", upper).out)["uuid"] == PROBE
    r = mfcli("runtemplate", "create", "--app", upper, "--company", "acme", "--name", "p",
              "--format", "json")
    assert (r.code, r.json["app_id"]) == (0, 1)
    # A file that writes the uuid in upper case is the same application: it is updated.
    doc = json.loads((examples_dir / "probe.multiflexi.app.json").read_text())
    doc["uuid"], doc["version"] = upper, "9.9"
    again = tmp_path / "probe-upper.json"
    again.write_text(json.dumps(doc))
    r = mfcli("--format", "json", "application", "import-json", "--file", str(again))
    assert r.code == 0, r.err
    assert (r.json[0]["created"], r.json[0]["app_id"]) == (False, 1)
    apps = mfcli("--format", "json", "application", "list").json
    assert [(a["id"], a["version"]) for a in apps] == [(1, "9.9"), (2, apps[1]["version"])]


def test_company_with_templates_credentials_or_jobs_cannot_be_removed(
    mfcli, world: dict[str, int]
) -> None:
    rt = make_template(mfcli)
    assert mfcli("credential", "create", "--company", "acme", "--type", "Probe", "--name", "p",
                 "--field", "PASSWORD=pw-123").code == 0
    assert mfcli("runtemplate", "run", "--id", str(rt)).code == 0
    one_line_error(
        mfcli("company", "remove", "--slug", "acme"),
        "company acme still has 1 run template(s), 1 credential(s), 1 job(s) in history; "
        "remove those first or disable it with "
        "`multiflexi-cli company update --slug acme --disabled`")


# --- applications ---------------------------------------------------------------------------


def test_application_list_show_update_remove(mfcli, world: dict[str, int]) -> None:
    apps = mfcli("application", "list", "--format", "json").json
    assert [(a["id"], a["uuid"]) for a in apps] == [(1, PROBE), (2, CONTRACTS)]
    text = mfcli("application", "list").out
    assert "MultiFlexi Probe" in text and "Contract to Invoices" in text
    shown = mfcli("application", "show", "--id", "1").out
    assert "executable    multiflexi-probe" in shown
    assert "environment:" in shown and "artifacts:" in shown
    password_row = next(line for line in shown.splitlines() if line.startswith("PASSWORD"))
    assert "donotcare" not in password_row  # a secret default is not printed

    r = mfcli("application", "update", "--id", "2", "--disable")
    assert (r.code, r.out) == (0, "application 2 'Contract to Invoices': disabled\n")
    assert mfcli("application", "show", "--id", "2", "--format", "json").json["enabled"] is False
    make_template(mfcli)
    one_line_error(
        mfcli("application", "remove", "--id", "1"),
        "application 1 (MultiFlexi Probe) has 1 run template(s) and 0 job(s) in history; "
        "remove its run templates first, or disable it with "
        "`multiflexi-cli application update --id 1 --disable`")
    one_line_error(mfcli("application", "export-json", "--id", "1", "--file",
                         "/nonexistent/dir/probe.json"),
                   "/nonexistent/dir/probe.json: cannot write: No such file or directory")
    r = mfcli("application", "remove", "--id", "2", "--format", "json")
    assert r.json == {"id": 2, "name": "Contract to Invoices", "removed": True}
    assert [a["id"] for a in mfcli("application", "list", "--format", "json").json] == [1]


# --- credential types and credentials ------------------------------------------------------


def test_credential_type_import_list_show(mfcli, examples_dir: Path, tmp_path: Path) -> None:
    folder = examples_dir / "credential-types"
    r = mfcli("credential-type", "import-json", "--file", str(folder))
    assert r.code == 0, r.err
    assert f"{folder / 'Probe.json'}: created credential type 'Probe'" in r.out
    r = mfcli("credential-type:import-json", "--file", str(folder / "Probe.json"))
    assert r.out == f"{folder / 'Probe.json'}: updated credential type 'Probe'\n"
    listed = mfcli("credential-type", "list", "--format", "json").json
    assert [t["code"] for t in listed] == ["AbraFlexi", "Office365", "Probe"]
    o365 = mfcli("credential-type", "show", "--code", "Office365", "--format", "json").json
    assert o365["name"] == "Office 365"
    assert [(f["keyword"], f["secret"]) for f in o365["fields"]] == [
        ("OFFICE365_TENANT", False), ("OFFICE365_USERNAME", False),
        ("OFFICE365_PASSWORD", True), ("OFFICE365_CLIENTID", False),
        ("OFFICE365_CLSECRET", True)]
    text = mfcli("credential-type", "show", "--code", "AbraFlexi").out
    assert "ABRAFLEXI_PASSWORD" in text and "code         AbraFlexi" in text

    broken = tmp_path / "broken.json"
    broken.write_text('{"code": "X", "name": "X", "fields": [{"keyword": "A"}],}')
    r = mfcli("credential-type", "import-json", "--file", str(broken))
    assert r.code == 1
    assert r.err == (f"{broken}: NOT imported\n"
                     f"  {broken}:1:56: invalid JSON: trailing comma before '}}'\n")
    broken.write_text('{"code": "X", "name": "X", "fields": [{"keyword": "A", "type": "string"},'
                      ' {"keyword": "A", "type": "string"}]}')
    r = mfcli("credential-type", "import-json", "--file", str(broken))
    assert r.code == 1
    assert "$.fields[1].keyword: 'A' appears twice" in r.err
    # The other upstream format: a credential prototype (default_value, labelled options).
    proto = DATA / "fiobank.credential-prototype.json"
    r = mfcli("credential-type", "import-json", "--file", str(proto))
    assert (r.code, r.out) == (0, f"{proto}: created credential type 'FioBank'\n")
    fio = mfcli("credential-type", "show", "--code", "FioBank", "--format", "json").json
    assert [(f["keyword"], f["type"], f["secret"], f["default"], f["options"])
            for f in fio["fields"]] == [
        ("FIO_TOKEN", "password", True, None, None),
        ("FIO_ACCOUNT", "string", False, "2400000000", None),
        ("FIO_DAYS", "integer", False, "7", None),
        ("FIO_FORMAT", "select", False, "json", ["json", "xml"]),
        ("FIO_NOTIFY", "email", False, None, None),
        ("FIO_API", "url", False, "https://fioapi.fio.cz/v1/rest", None),
    ]

    latin = tmp_path / "latin1.json"
    latin.write_bytes('{"code": "Úroky"}'.encode("latin-1"))
    r = mfcli("credential-type", "import-json", "--file", str(latin))
    assert (r.code, r.err) == (1, f"{latin}: NOT imported\n  not UTF-8 text (byte 10)\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    r = mfcli("credential-type", "import-json", "--file", str(empty), "--format", "json")
    assert r.code == 1
    assert r.json == {"error": {"name": "invalid_params",
                                "message": f"no *.json files found in {empty}"}}
    assert [t["code"] for t in mfcli("credential-type", "list", "--format", "json").json] == [
        "AbraFlexi", "FioBank", "Office365", "Probe"]


def test_credential_prototype_email_url_integer_values_are_checked(
    mfcli, mf_env, world: dict[str, int], tmp_path: Path
) -> None:
    """A prototype's email, url and integer fields check their values as the app fields of
    those types do, when a credential is created and when it is updated."""
    proto = DATA / "fiobank.credential-prototype.json"
    assert mfcli("credential-type", "import-json", "--file", str(proto)).code == 0
    create = ("credential", "create", "--company", "acme", "--type", "FioBank", "--name",
              "fio", "--field", "FIO_TOKEN=fio-Token-1")
    before = dump_tables(mf_env.db_url)
    for field, message in (
        ("FIO_DAYS=7.5", "FIO_DAYS: '7.5' is not an integer"),
        ("FIO_DAYS=week", "FIO_DAYS: 'week' is not an integer"),
        ("FIO_NOTIFY=accounts", "FIO_NOTIFY: 'accounts' is not an e-mail address"),
        ("FIO_API=fioapi.fio.cz", "FIO_API: 'fioapi.fio.cz' is not a URL (scheme://host/...)"),
    ):
        one_line_error(mfcli(*create, "--field", field), message)
    assert dump_tables(mf_env.db_url) == before
    r = mfcli(*create, "--field", "FIO_DAYS= +14 ", "--field", "FIO_NOTIFY=ucetni@acme.example",
              "--format", "json")
    assert r.code == 0, r.err
    assert r.json["values"] == {
        "FIO_ACCOUNT": "2400000000", "FIO_API": "https://fioapi.fio.cz/v1/rest",
        "FIO_DAYS": "14", "FIO_FORMAT": "json", "FIO_NOTIFY": "ucetni@acme.example",
        "FIO_TOKEN": "********"}
    cred = str(r.json["id"])
    one_line_error(mfcli("credential", "update", "--id", cred, "--field", "FIO_NOTIFY=@acme"),
                   "FIO_NOTIFY: '@acme' is not an e-mail address")
    one_line_error(mfcli("credential", "update", "--id", cred, "--field", "FIO_DAYS=1e3"),
                   "FIO_DAYS: '1e3' is not an integer")
    # A prototype whose own default does not fit its type is refused at import, by path.
    broken = tmp_path / "broken.credential-prototype.json"
    doc = json.loads(proto.read_text())
    doc["code"] = "FioBroken"
    doc["fields"][2]["default_value"] = "a week"
    broken.write_text(json.dumps(doc))
    r = mfcli("credential-type", "import-json", "--file", str(broken))
    assert r.code == 1
    assert r.err.splitlines() == [f"{broken}: NOT imported",
                                  "  $.fields[2].default_value: 'a week' is not an integer"]


def test_credential_lifecycle(mfcli, world: dict[str, int]) -> None:
    r = mfcli("credential", "create", "--company", "acme", "--type", "AbraFlexi", "--name",
              "main", "--field", "ABRAFLEXI_URL=https://acme.flexibee.eu:5434",
              "--field", "ABRAFLEXI_LOGIN=api", "--field", "ABRAFLEXI_PASSWORD=Abra-Pw-1",
              "--field", "ABRAFLEXI_COMPANY=acme_sro")
    assert (r.code, r.out) == (0, "created credential 1 'main' (AbraFlexi) for acme\n")
    shown = mfcli("credential", "show", "--id", "1", "--format", "json").json
    assert shown["values"] == {"ABRAFLEXI_COMPANY": "acme_sro", "ABRAFLEXI_LOGIN": "api",
                               "ABRAFLEXI_PASSWORD": "********",
                               "ABRAFLEXI_URL": "https://acme.flexibee.eu:5434"}
    assert (shown["company"], shown["type"], shown["name"]) == ("acme", "AbraFlexi", "main")
    text = mfcli("credential", "show", "--id", "1").out
    assert "Abra-Pw-1" not in text and "********" in text
    revealed = mfcli("credential", "show", "--id", "1", "--reveal", "--format", "json").json
    assert revealed["values"]["ABRAFLEXI_PASSWORD"] == "Abra-Pw-1"
    assert "Abra-Pw-1" in mfcli("credential", "show", "--id", "1", "--reveal").out

    # Defaults of the type fill what was not given; values are type-checked.
    r = mfcli("credential", "create", "--company", "globex", "--type", "Probe", "--name",
              "probe", "--field", "PASSWORD=pr-Secret-2", "--format", "json")
    assert r.json["values"] == {"APP_DEBUG": "0", "PASSWORD": "********", "PROBE_SLEEP": "0"}
    one_line_error(mfcli("credential", "create", "--company", "acme", "--type", "Probe",
                         "--name", "p2", "--field", "PASSWORD=x", "--field", "PROBE_SLEEP=soon"),
                   "PROBE_SLEEP: 'soon' is not a number")
    one_line_error(mfcli("credential", "create", "--company", "acme", "--type", "Probe",
                         "--name", "p2"),
                   "credential type Probe requires: PASSWORD (give them with --field KEY=VALUE)")
    one_line_error(mfcli("credential", "create", "--company", "acme", "--type", "Probe",
                         "--name", "p2", "--field", "PASSWORD=x", "--field", "NOPE=1"),
                   "NOPE: not a field of credential type Probe "
                   "(fields: PASSWORD, PROBE_SLEEP, APP_DEBUG)")
    one_line_error(mfcli("credential", "create", "--company", "acme", "--type", "Probe",
                         "--name", "p2", "--field", "PASSWORD"),
                   "--field: 'PASSWORD' is not KEY=VALUE")
    one_line_error(mfcli("credential", "create", "--company", "acme", "--type", "AbraFlexi",
                         "--name", "main", "--field", "ABRAFLEXI_URL=u", "--field",
                         "ABRAFLEXI_LOGIN=l", "--field", "ABRAFLEXI_PASSWORD=p", "--field",
                         "ABRAFLEXI_COMPANY=c"),
                   "name: company acme already has a credential named 'main'")

    listed = mfcli("credential", "list", "--format", "json").json
    assert [(c["id"], c["company"], c["name"]) for c in listed] == [
        (1, "acme", "main"), (2, "globex", "probe")]
    assert all(v != "Abra-Pw-1" for c in listed for v in c["values"].values())

    r = mfcli("credential", "update", "--id", "1", "--field", "ABRAFLEXI_PASSWORD=Abra-Pw-2",
              "--field", "ABRAFLEXI_LOGIN=api2", "--format", "json")
    assert r.code == 0, r.err
    assert r.json["values"]["ABRAFLEXI_LOGIN"] == "api2"
    assert r.json["values"]["ABRAFLEXI_PASSWORD"] == "********"
    revealed = mfcli("credential", "show", "--id", "1", "--reveal", "--format", "json").json
    assert revealed["values"]["ABRAFLEXI_PASSWORD"] == "Abra-Pw-2"
    one_line_error(mfcli("credential", "update", "--id", "2", "--field", "APP_DEBUG=perhaps"),
                   "APP_DEBUG: 'perhaps' is not a boolean (use true/false, yes/no or 1/0)")

    # Removal is refused while a run template uses it.
    rt = make_template(mfcli, "acme", "contracts")
    assert mfcli("runtemplate", "assign-credential", "--id", str(rt), "--credential",
                 "1").code == 0
    one_line_error(mfcli("credential", "remove", "--id", "1"),
                   f"credential 1 is assigned to run template(s) {rt}; unassign it first")
    assert mfcli("runtemplate", "unassign-credential", "--id", str(rt), "--credential",
                 "1").code == 0
    r = mfcli("credential", "remove", "--id", "1")
    assert (r.code, r.out) == (0, "removed credential 1 'main'\n")
    assert [c["id"] for c in mfcli("credential", "list", "--format", "json").json] == [2]


# --- run templates -------------------------------------------------------------------------------


def test_runtemplate_create_list_show_update_remove(mfcli, world: dict[str, int]) -> None:
    r = mfcli("runtemplate", "create", "--app", PROBE, "--company", "acme", "--name", "hourly",
              "--interv", "h", "--delay", "30", "--config", "FORCE_EXITCODE=3")
    assert r.code == 0, r.err
    assert r.out.startswith("created run template 1 'hourly' (MultiFlexi Probe for acme), "
                            "next run 20")
    created = r.out
    r = mfcli("run-template", "create", "--app", "2", "--company", str(world["globex"]),
              "--name", "nightly", "--interv", "c", "--cron", "30 2 * * *", "--tz",
              "Europe/Prague", "--executor", "Podman", "--inactive", "--max-attempts", "3",
              "--retry-backoff", "exponential", "--format", "json")
    assert r.code == 0, r.err
    nightly = r.json
    assert {k: nightly[k] for k in ("app", "company", "interv", "cron", "timezone", "executor",
                                    "active", "max_attempts", "retry_backoff",
                                    "next_schedule")} == {
        "app": "Contract to Invoices", "company": "globex", "interv": "c",
        "cron": "30 2 * * *", "timezone": "Europe/Prague", "executor": "Podman",
        "active": False, "max_attempts": 3, "retry_backoff": "exponential",
        "next_schedule": None}

    listed = mfcli("runtemplate", "list", "--format", "json").json
    assert [t["name"] for t in listed] == ["hourly", "nightly"]
    assert [t["name"] for t in mfcli("runtemplate", "list", "--company", "globex",
                                     "--format", "json").json] == ["nightly"]
    assert [t["name"] for t in mfcli("runtemplate", "list", "--app", PROBE,
                                     "--format", "json").json] == ["hourly"]
    text = mfcli("runtemplate", "list").out
    assert "c 30 2 * * *" in text

    shown = mfcli("runtemplate", "show", "--id", "1", "--format", "json").json
    assert (shown["interv"], shown["delay"], shown["config_keys"], shown["credentials"]) == (
        "h", 30, ["FORCE_EXITCODE"], [])
    # What is shown is when the job will be due: the tick plus the template's delay.
    assert shown["next_tick"].endswith(":00:00Z")
    assert shown["next_schedule"] == shown["next_tick"].replace(":00:00Z", ":00:30Z")
    assert created.rstrip().endswith(f"next run {shown['next_schedule']}")
    text = mfcli("runtemplate", "show", "--id", "1").out
    assert f"next_schedule          {shown['next_schedule']}" in text
    assert f"next_tick              {shown['next_tick']}" in text
    assert shown["next_schedule"] in mfcli("runtemplate", "list").out
    queue = mfcli("queue", "list", "--format", "json").json
    assert queue["next"] == [{"runtemplate_id": 1, "name": "hourly",
                              "next": shown["next_schedule"], "tick": shown["next_tick"]}]
    assert shown["next_schedule"] in mfcli("queue", "list").out

    r = mfcli("runtemplate", "update", "--id", "1", "--interv", "n", "--name", "never",
              "--format", "json")
    assert (r.json["interv"], r.json["name"], r.json["next_schedule"]) == ("n", "never", None)
    r = mfcli("runtemplate", "update", "--id", "2", "--active", "--format", "json")
    assert r.json["active"] is True and r.json["next_schedule"] is not None

    one_line_error(mfcli("runtemplate", "update", "--id", "1", "--interv", "c"),
                   "cron: interval c (custom) needs --cron, e.g. --cron '30 2 * * *'")
    one_line_error(mfcli("runtemplate", "update", "--id", "1", "--tz", "Mars/Olympus"),
                   "timezone: 'Mars/Olympus' is not a known IANA time zone")
    r = mfcli("runtemplate", "update", "--id", "2", "--cron", "61 * * * *")
    assert r.code == 1 and r.err.startswith("multiflexi-cli: error: cron: '61 * * * *' is not")
    usage_error(mfcli("runtemplate", "create", "--app", PROBE, "--company", "acme", "--name",
                      "x", "--executor", "Kubernetes"), "Invalid value for '--executor'")
    one_line_error(mfcli("runtemplate", "create", "--app", PROBE, "--company", "acme",
                         "--name", " "), "name: must not be empty")

    r = mfcli("runtemplate", "remove", "--id", "2")
    assert (r.code, r.out) == (0, "removed run template 2 'nightly'\n")
    assert [t["id"] for t in mfcli("runtemplate", "list", "--format", "json").json] == [1]


def test_container_executors_need_an_image(mfcli, world: dict[str, int],
                                           tmp_path: Path) -> None:
    plain = tmp_path / "plain.app.json"
    plain.write_text(json.dumps(shell_app("Plain")))
    app = mfcli("application", "import-json", "--file", str(plain), "--format", "json").json
    plain_id = str(app[0]["app_id"])
    refused = ("executor: application 'Plain' has no ociimage, so it runs with the Native "
               "executor only (or give the template an image: --ociimage)")
    for executor in ("Podman", "Docker"):
        one_line_error(mfcli("runtemplate", "create", "--app", plain_id, "--company", "acme",
                             "--name", "boxed", "--executor", executor), refused)
    r = mfcli("runtemplate", "create", "--app", PROBE, "--company", "acme", "--name", "probe",
              "--executor", "Docker", "--format", "json")
    assert (r.code, r.json["executor"]) == (0, "Docker"), r.err
    r = mfcli("runtemplate", "create", "--app", plain_id, "--company", "acme", "--name", "plain",
              "--format", "json")
    plain_rt = str(r.json["id"])
    one_line_error(mfcli("runtemplate", "update", "--id", plain_rt, "--executor", "Docker"),
                   refused)
    r = mfcli("runtemplate", "update", "--id", plain_rt, "--executor", "Docker", "--ociimage",
              "localhost/plain:1", "--format", "json")
    assert (r.code, r.json["executor"]) == (0, "Docker"), r.err
    one_line_error(mfcli("runtemplate", "update", "--id", plain_rt, "--ociimage", ""), refused)


def test_set_config_is_type_checked_and_unset(mfcli, mf_env, world: dict[str, int]) -> None:
    rt = str(make_template(mfcli))
    r = mfcli("runtemplate", "set-config", "--id", rt, "FORCE_EXITCODE=+2", "APP_DEBUG=yes",
              "EXTRA_NOTE=free text")
    assert (r.code, r.out) == (
        0, f"run template {rt}: configured APP_DEBUG, EXTRA_NOTE, FORCE_EXITCODE\n")
    env = mfcli("runtemplate", "env", "--id", rt, "--format", "json").json["environment"]
    assert (env["FORCE_EXITCODE"], env["APP_DEBUG"], env["EXTRA_NOTE"]) == ("2", "1", "free text")

    before = dump_tables(mf_env.db_url)
    one_line_error(mfcli("runtemplate", "set-config", "--id", rt, "FORCE_EXITCODE=three"),
                   "FORCE_EXITCODE: 'three' is not an integer")
    one_line_error(mfcli("runtemplate", "set-config", "--id", rt, "APP_DEBUG=yes",
                         "PROBE_SLEEP=1.5"), "PROBE_SLEEP: '1.5' is not an integer")
    one_line_error(mfcli("runtemplate", "set-config", "--id", rt, "NOEQUALS"),
                   "KEY=VALUE: 'NOEQUALS' is not KEY=VALUE")
    one_line_error(mfcli("runtemplate", "set-config", "--id", rt, "--unset", "NOT_SET"),
                   f"NOT_SET: not set on run template {rt}")
    usage_error(mfcli("runtemplate", "set-config", "--id", rt),
                "give KEY=VALUE arguments or --unset KEY")
    assert dump_tables(mf_env.db_url) == before

    r = mfcli("runtemplate", "set-config", "--id", rt, "--unset", "FORCE_EXITCODE",
              "--unset", "EXTRA_NOTE", "--format", "json")
    assert r.json["config_keys"] == ["APP_DEBUG"]
    env = mfcli("runtemplate", "env", "--id", rt, "--format", "json").json["environment"]
    assert env["FORCE_EXITCODE"] == "0"  # back to the app default
    assert "EXTRA_NOTE" not in env


def test_assign_and_unassign_credential(mfcli, world: dict[str, int]) -> None:
    rt = str(make_template(mfcli))
    assert mfcli("credential", "create", "--company", "acme", "--type", "Probe", "--name", "p",
                 "--field", "PASSWORD=pw-Secret-1").code == 0
    r = mfcli("runtemplate", "assign-credential", "--id", rt, "--credential", "1")
    assert (r.code, r.out) == (0, f"run template {rt}: credential 1 assigned\n")
    assert mfcli("runtemplate", "show", "--id", rt, "--format", "json").json["credentials"] == [1]
    one_line_error(mfcli("runtemplate", "assign-credential", "--id", rt, "--credential", "1"),
                   f"credential 1 is already assigned to run template {rt}")
    r = mfcli("runtemplate", "unassign-credential", "--id", rt, "--credential", "1")
    assert (r.code, r.out) == (0, f"run template {rt}: credential 1 unassigned\n")
    one_line_error(mfcli("runtemplate", "unassign-credential", "--id", rt, "--credential", "1"),
                   f"credential 1 is not assigned to run template {rt}")
    r = mfcli("runtemplate", "create", "--app", PROBE, "--company", "acme", "--name", "with",
              "--credential", "1", "--format", "json")
    assert r.json["credentials"] == [1]


def test_env_explain_and_reveal(mfcli, world: dict[str, int]) -> None:
    assert mfcli("credential", "create", "--company", "acme", "--type", "Probe", "--name",
                 "probe creds", "--field", "PASSWORD=cred-Secret-1", "--field",
                 "PROBE_SLEEP=5").code == 0
    rt = str(make_template(mfcli, "acme", "probe", "--credential", "1", "--config",
                           "PROBE_SLEEP=7", "--config", "FORCE_EXITCODE=1"))
    r = mfcli("runtemplate", "env", "--id", rt)
    assert r.code == 0 and r.err == ""
    lines = r.out.splitlines()
    assert "PASSWORD=********" in lines
    assert "ZABBIX_KEY=********" in lines  # built from the password
    assert "PROBE_SLEEP=7" in lines and "FORCE_EXITCODE=1" in lines
    assert "MULTIFLEXI_COMPANY_CODE=acme" in lines
    assert f"MULTIFLEXI_RUNTEMPLATE_ID={rt}" in lines
    assert "cred-Secret-1" not in r.out

    r = mfcli("runtemplate", "env", "--id", rt, "--explain")
    text = r.out
    assert ("PROBE_SLEEP=7\n    from run template (overrides: app default, "
            "credential #1 'probe creds' (Probe))\n") in text
    assert "PASSWORD=********\n    from credential #1 'probe creds' (Probe) " \
           "(overrides: app default)\n" in text
    assert "FILE_UPLOAD=/etc/fstab\n    from app default\n" in text
    assert "cred-Secret-1" not in text

    doc = mfcli("runtemplate", "env", "--id", rt, "--explain", "--format", "json").json
    rows = {row["key"]: row for row in doc["environment"]}
    assert rows["PASSWORD"] == {"key": "PASSWORD", "value": "********",
                                "source": "credential #1 'probe creds' (Probe)",
                                "secret": True, "type": "password",
                                "overridden": ["app default"]}
    assert (doc["missing"], doc["errors"]) == ([], [])
    doc = mfcli("runtemplate", "env", "--id", rt, "--explain", "--reveal", "--format",
                "json").json
    rows = {row["key"]: row for row in doc["environment"]}
    assert rows["PASSWORD"]["value"] == "cred-Secret-1"
    assert rows["ZABBIX_KEY"]["value"] == "multiflexi-probe-cred-Secret-1"
    assert "PASSWORD=cred-Secret-1" in mfcli("runtemplate", "env", "--id", rt, "--reveal").out


def test_env_reports_missing_required_values(mfcli, world: dict[str, int]) -> None:
    r = mfcli("runtemplate", "create", "--app", CONTRACTS, "--company", "acme", "--name", "c",
              "--format", "json")
    rt = str(r.json["id"])
    assert mfcli("runtemplate", "set-config", "--id", rt, "ABRAFLEXI_URL=").code == 0
    r = mfcli("runtemplate", "env", "--id", rt)
    assert r.code == 0
    assert r.err == "missing required: ABRAFLEXI_URL\n"
    doc = mfcli("runtemplate", "env", "--id", rt, "--format", "json").json
    assert doc["missing"] == ["ABRAFLEXI_URL"]
    # The default's placeholder is filled from the final values.
    assert doc["environment"]["RESULT_FILE"] == "contracts_demo_de.json"


def test_preview(mfcli, world: dict[str, int]) -> None:
    hourly = str(make_template(mfcli, "acme", "hourly", "--interv", "h", "--delay", "90"))
    r = mfcli("runtemplate", "preview", "--id", hourly, "--count", "3", "--from",
              "2026-01-10T08:20:00Z", "--format", "json")
    assert r.code == 0, r.err
    assert [d["due"] for d in r.json["due"]] == [
        "2026-01-10T09:01:30Z", "2026-01-10T10:01:30Z", "2026-01-10T11:01:30Z"]
    assert [d["tick"] for d in r.json["due"]] == [
        "2026-01-10T09:00:00Z", "2026-01-10T10:00:00Z", "2026-01-10T11:00:00Z"]
    r = mfcli("runtemplate", "preview", "--id", hourly)
    assert r.code == 0 and len(r.out.splitlines()) == 11  # header + the default 10

    nightly = str(make_template(mfcli, "acme", "nightly", "--interv", "c", "--cron",
                                "30 2 * * *", "--tz", "Europe/Prague"))
    r = mfcli("runtemplate", "preview", "--id", nightly, "--count", "3", "--from",
              "2026-03-28T00:00:00Z", "--format", "json")
    assert r.json["timezone"] == "Europe/Prague"
    # 02:30 does not exist on the night summer time starts; the job runs at 03:00.
    assert [(d["local"], d["due"]) for d in r.json["due"]] == [
        ("2026-03-28T02:30:00+01:00", "2026-03-28T01:30:00Z"),
        ("2026-03-29T03:00:00+02:00", "2026-03-29T01:00:00Z"),
        ("2026-03-30T02:30:00+02:00", "2026-03-30T00:30:00Z"),
    ]
    text = mfcli("runtemplate", "preview", "--id", nightly, "--count", "1", "--from",
                 "2026-03-28T00:00:00+01:00").out
    assert text.splitlines() == ["LOCAL TIME                 UTC",
                                 "2026-03-28T02:30:00+01:00  2026-03-28T01:30:00Z"]

    never = str(make_template(mfcli, "acme", "never"))
    r = mfcli("runtemplate", "preview", "--id", never)
    assert (r.code, r.out) == (0, "never scheduled (interval n or inactive)\n")
    assert mfcli("runtemplate", "preview", "--id", never, "--format", "json").json["due"] == []
    one_line_error(mfcli("runtemplate", "preview", "--id", hourly, "--from", "yesterday"),
                   "--from: 'yesterday' is not an ISO 8601 time (e.g. 2026-12-01 or "
                   "2026-12-01T08:00:00Z)")
    one_line_error(mfcli("runtemplate", "preview", "--id", hourly, "--from",
                         "2026-01-10T08:20:00"),
                   "--from: '2026-01-10T08:20:00' has no time zone (add Z or +01:00)")


# --- running, jobs, queue ----------------------------------------------------------------------


def test_run_queues_a_scheduled_job_launched_by_the_user(mfcli, world: dict[str, int]) -> None:
    rt = make_template(mfcli)
    before = datetime.now(UTC)
    r = mfcli("runtemplate", "run", "--id", str(rt), "--env", "FORCE_EXITCODE=4",
              "--format", "json")
    assert r.code == 0, r.err
    job = r.json
    assert (job["state"], job["runtemplate_id"], job["schedule_type"], job["launched_by"]) == (
        "scheduled", rt, "adhoc-cli", getpass.getuser())
    assert datetime.fromisoformat(job["schedule"].replace("Z", "+00:00")) >= before
    r = mfcli("job", "create", "--template", str(rt))
    # Without a daemon the job waits in the database (the message may say more).
    assert r.code == 0
    assert r.out.startswith(f"queued job {job['id'] + 1} of run template {rt}")
    r = mfcli("run-template", "run", "--id", str(rt))
    assert r.out.startswith(f"queued job {job['id'] + 2} of run template {rt}")

    queue = mfcli("queue", "list", "--format", "json").json
    assert [q["job_id"] for q in queue["queued"]] == [job["id"], job["id"] + 1, job["id"] + 2]
    assert all(q["state"] == "scheduled" for q in queue["queued"])
    text = mfcli("queue", "list").out
    assert text.startswith("queued jobs:\n") and "adhoc-cli" in text

    one_line_error(mfcli("runtemplate", "run", "--id", str(rt), "--env", "FORCE_EXITCODE=x"),
                   "--env FORCE_EXITCODE: 'x' is not an integer")
    one_line_error(mfcli("runtemplate", "run", "--id", str(rt), "--env", "PASSWORD"),
                   "--env: 'PASSWORD' is not KEY=VALUE")
    assert len(mfcli("job", "list", "--format", "json").json) == 3


def test_job_list_filters_and_limit(mfcli, world: dict[str, int]) -> None:
    acme = make_template(mfcli, "acme", "a")
    globex = make_template(mfcli, "globex", "g")
    ids = []
    for rt in (acme, globex, acme, globex, acme):
        ids.append(mfcli("runtemplate", "run", "--id", str(rt), "--format", "json").json["id"])

    def listed(*args: str) -> list[int]:
        r = mfcli("job", "list", "--format", "json", *args)
        assert r.code == 0, r.err
        return [j["id"] for j in r.json]

    assert listed() == ids[::-1]  # newest first
    assert listed("--company", "acme") == [ids[4], ids[2], ids[0]]
    assert listed("--company", str(world["globex"])) == [ids[3], ids[1]]
    assert listed("--runtemplate", str(globex)) == [ids[3], ids[1]]
    assert listed("--state", "scheduled", "--company", "acme", "--limit", "2") == [ids[4],
                                                                                 ids[2]]
    assert listed("--state", "succeeded") == []
    assert listed("--limit", "1") == [ids[4]]
    assert listed("--before", str(ids[2])) == [ids[1], ids[0]]
    rows = mfcli("job", "list", "--format", "json").json
    assert {r["company"] for r in rows} == {"acme", "globex"}
    text = mfcli("job", "list", "--limit", "1").out.splitlines()
    assert text[0].split()[:4] == ["ID", "STATE", "TPL", "TEMPLATE"]
    assert text[1].split()[:5] == [str(ids[4]), "scheduled", str(acme), "a", "acme"]
    usage_error(mfcli("job", "list", "--limit", "0"), "Invalid value for '--limit'")


def test_a_claimed_job_is_shown_as_claimed(mfcli, core: Core, world: dict[str, int]) -> None:
    """Taken by a node, not started yet: listed and shown as claimed, with no begin."""
    rt = make_template(mfcli)
    job = mfcli("runtemplate", "run", "--id", str(rt), "--format", "json").json["id"]
    with core.db.session() as s:
        assert core.transitions.claim(s, datetime.now(UTC), "node-7", 5) == [job]
    assert [j["id"] for j in mfcli("job", "list", "--state", "claimed", "--format",
                                   "json").json] == [job]
    shown = mfcli("job", "show", "--id", str(job), "--format", "json").json
    assert (shown["state"], shown["node"], shown["begin"]) == ("claimed", "node-7", None)
    assert mfcli("job", "list").out.splitlines()[1].split()[:2] == [str(job), "claimed"]


def test_job_show_output_and_artifacts_of_a_queued_job(mfcli, mf_env, world: dict[str, int],
                                                       tmp_path: Path) -> None:
    rt = make_template(mfcli)
    job = mfcli("runtemplate", "run", "--id", str(rt), "--format", "json").json["id"]
    shown = mfcli("job", "show", "--id", str(job), "--format", "json").json
    assert (shown["state"], shown["app"], shown["company"], shown["exitcode"],
            shown["artifacts"], shown["launched_by"]) == (
        "scheduled", "MultiFlexi Probe", "acme", None, [], getpass.getuser())
    text = mfcli("job", "show", "--id", str(job)).out
    assert f"template     {rt} probe" in text and "state        scheduled" in text

    r = mfcli("job", "output", "--id", str(job))
    assert (r.code, r.out, r.err) == (0, "", "")
    assert mfcli("job", "output", "--id", str(job), "--format", "json").json == []
    assert mfcli("artifact", "list", "--job", str(job), "--format", "json").json == []
    assert "(none)" in mfcli("artifact", "list", "--job", str(job)).out

    # An artifact that was too big to keep says so when asked for.
    db = Database(mf_env.db_url)
    with db.session() as s:
        kept = Artifact(job_id=job, filename="report.json", content=b'{"ok": true}', size=12,
                        content_type="application/json")
        skipped = Artifact(job_id=job, filename="huge.bin", content=None, skipped=True,
                           size=10**9, note="larger than the 16 MiB limit")
        s.add_all([kept, skipped])
        s.flush()
        kept_id, skipped_id = kept.id, skipped.id
    db.dispose()
    r = mfcli("artifact", "get", "--id", str(kept_id))
    assert (r.code, r.out) == (0, '{"ok": true}')
    one_line_error(mfcli("artifact", "get", "--id", str(skipped_id)),
                   f"artifact {skipped_id} (huge.bin) was not stored: larger than the 16 MiB "
                   "limit")
    listed = mfcli("artifact", "list", "--job", str(job), "--format", "json").json
    assert [(a["filename"], a["skipped"]) for a in listed] == [("report.json", False),
                                                                ("huge.bin", True)]
    target = tmp_path / "got.json"
    r = mfcli("artifact", "get", "--id", str(kept_id), "--file", str(target))
    assert (r.code, r.out) == (0, f"written {target} (12 bytes)\n")
    assert target.read_bytes() == b'{"ok": true}'


# --- status, db, demo ------------------------------------------------------------------------


def test_status(mfcli, mf_env, world: dict[str, int]) -> None:
    make_template(mfcli, "acme", "a", "--interv", "h")
    for args in (("status", "--format", "json"), ("--format", "json", "status")):
        r = mfcli(*args)
        assert r.code == 0, r.err
        doc = r.json
        assert doc["version"] == multiflexi.__version__
        assert doc["data_dir"] == str(mf_env.data_dir)
        assert doc["node"] == "test-node"
        assert doc["database"]["up_to_date"] is True
        assert doc["database"]["revision"] == doc["database"]["head"]
        assert doc["counts"] == {"applications": 2, "companies": 2, "credentials": 0,
                                 "runtemplates": 1, "active_runtemplates": 1, "jobs": {}}
        assert (doc["daemon"]["reachable"], doc["daemon"]["socket"]) == (False,
                                                                         str(mf_env.socket))
        assert doc["daemon"]["problem"]
    text = mfcli("status").out
    assert "(up to date)" in text and "not running" in text


@pytest.mark.parametrize("backend", ["sqlite"])  # a setting of SQLite's
def test_a_write_waits_sqlite_busy_seconds_for_a_lock_then_says_so(
        mfcli, mf_env, monkeypatch: pytest.MonkeyPatch) -> None:
    assert mfcli("company", "create", "--name", "Acme", "--slug", "acme").code == 0
    monkeypatch.setenv("MULTIFLEXI_SQLITE_BUSY_SECONDS", "1")
    holder = sqlite3.connect(str(make_url(mf_env.db_url).database), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program writes (a script, a backup)
    try:
        started = time.monotonic()
        r = mfcli("company", "create", "--name", "Globex", "--slug", "globex")
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    one_line_error(r, f"database {mf_env.db_url}: database is locked")
    assert 0.9 <= waited < 15, waited  # it waited for the lock, 1 s and not the default 30
    assert mfcli("company", "create", "--name", "Globex", "--slug", "globex").code == 0


def test_db_upgrade_is_idempotent(mfcli, mf_env) -> None:
    before = dump_tables(mf_env.db_url)
    r = mfcli("db", "upgrade", "--format", "json")
    assert r.code == 0, r.err
    assert r.json["before"] == r.json["after"] and r.json["after"]
    r = mfcli("db:upgrade")
    assert r.code == 0
    assert r.out.endswith(f": already at {r.out.split()[-1]}\n")
    assert dump_tables(mf_env.db_url) == before


def test_demo_is_idempotent(mfcli, mf_env) -> None:
    r = mfcli("demo", "--format", "json")
    assert r.code == 0, r.err
    assert r.json == {"applications": 13, "runtemplates": 6, "companies": 2}
    counts = row_counts(mf_env.db_url)
    r = mfcli("demo")
    assert (r.code, r.out) == (
        0, "demo data: 13 applications, 6 runtemplates, 2 companies\n")
    assert row_counts(mf_env.db_url) == counts
    names = [t["name"] for t in mfcli("runtemplate", "list", "--format", "json").json]
    assert names == ["Hello every minute", "Hello, flaky", "Probe hourly", "Probe failing",
                     "Probe daily", "Traceroute"]
