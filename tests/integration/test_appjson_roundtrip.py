"""Upstream application JSON through the CLI: import, export, re-import, upsert rules.

Every bundled upstream ``*.app.json`` must import unchanged, export, and import back into a
fresh database as the very same application.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from multiflexi import examples
from multiflexid.domain.appdef import AppDefinition
from multiflexid.services.apps import get_app, list_apps, to_definition
from multiflexid.store.db import Database
from tests.integration.conftest import DATA, dump_tables, row_counts

PROBE = "775ed801-2489-4981-bc14-d8a01cba1938"
CONTRACTS = "e0e20955-d71c-4003-85e5-7d65eb9da03f"
LEGACY = "97f30cf9-2d9e-4d91-ad65-9bdd8b4663cd"


@pytest.fixture
def db_url(reused_db_url: str) -> str:
    """This module's tests share one database per backend, emptied before each test."""
    return reused_db_url


def _show_all(mfcli: Any) -> dict[str, dict[str, Any]]:
    """``application show --format json`` of every app, by uuid, without the id."""
    r = mfcli("--format", "json", "application", "list")
    assert r.code == 0, r.err
    docs = {}
    for app in r.json:
        shown = mfcli("application", "show", "--uuid", app["uuid"], "--format", "json")
        assert shown.code == 0, shown.err
        doc = shown.json
        assert doc.pop("id") == app["id"]
        docs[doc["uuid"]] = doc
    return docs


def _definitions(url: str) -> dict[str, AppDefinition]:
    db = Database(url)
    try:
        with db.read_session() as s:
            return {
                str(a.uuid): to_definition(get_app(s, a.id, parts=True)) for a in list_apps(s)
            }
    finally:
        db.dispose()


def _use_db(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MULTIFLEXI_DATABASE_URL", url)


def test_every_bundled_app_exports_and_reimports_identically(
    mfcli, mf_env, examples_dir: Path, tmp_path: Path,
    fresh_db_url: Callable[[], str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = examples.app_files()
    assert len(files) == 12
    r = mfcli("application", "import-json", "--file", str(examples_dir))
    assert r.code == 0, r.err
    assert "12 imported, 0 failed" in r.out
    first = _show_all(mfcli)
    assert len(first) == 12
    first_defs = _definitions(mf_env.db_url)

    exported = tmp_path / "exported"
    exported.mkdir()
    first_exports: dict[str, Any] = {}
    for uuid in first:
        r = mfcli("application", "export-json", "--uuid", uuid)
        assert r.code == 0, r.err
        assert r.err == ""
        doc = json.loads(r.out)  # the whole of stdout is the document
        first_exports[uuid] = doc
        (exported / f"{uuid}.json").write_text(r.out, encoding="utf-8")

    fresh = fresh_db_url()
    _use_db(monkeypatch, fresh)
    r = mfcli("--format", "json", "application", "import-json", "--file", str(exported))
    assert r.code == 0, r.err
    assert [x["ok"] and x["created"] for x in r.json] == [True] * 12
    second = _show_all(mfcli)
    assert second == first
    second_defs = _definitions(fresh)
    assert second_defs == first_defs
    # Exporting again gives the same documents: export is a fixed point after one round.
    for uuid, doc in first_exports.items():
        r = mfcli("application", "export-json", "--uuid", uuid)
        assert json.loads(r.out) == doc


def _export_keeps_what_the_upstream_file_said(mfcli: Any) -> None:
    """The exported document of each bundled file carries the same meaning as the file."""
    for path in examples.app_files():
        original = json.loads(path.read_text(encoding="utf-8"))
        r = mfcli("application", "export-json", "--uuid", original["uuid"])
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        for key in ("name", "description", "uuid", "executable"):
            assert doc[key] == original[key], (path.name, key)
        assert doc["requirements"] == original.get("requirements", []), path.name
        assert list(doc["environment"]) == list(original["environment"]), path.name
        for key, spec in original["environment"].items():
            out = doc["environment"][key]
            for attr in ("type", "description", "defval", "required", "options", "hint",
                         "category"):
                if attr in spec:
                    assert out[attr] == spec[attr], (path.name, key, attr)
        for key in ("tags", "ociimage", "homepage", "version", "events", "kubernetes",
                    "cmdparamsTemplate", "artifacts"):
            if key in original:
                assert doc[key] == original[key], (path.name, key)
        if "exitCodes" in original:
            assert doc["exitCodes"] == {
                code: {"severity": "error", "retry": False, **meaning}
                for code, meaning in original["exitCodes"].items()
            }, path.name


def _export_to_a_directory_uses_upstream_file_name(mfcli: Any, tmp_path: Path) -> None:
    r = mfcli("application", "export-json", "--uuid", PROBE, "--file", str(tmp_path))
    assert r.code == 0, r.err
    target = tmp_path / "multiflexi_probe.multiflexi.app.json"
    assert r.out.strip() == f"written {target}"
    assert json.loads(target.read_text())["uuid"] == PROBE
    r = mfcli("application", "export-json", "--uuid", PROBE, "--file",
              str(tmp_path / "x.json"), "--format", "json")
    assert r.json == {"file": str(tmp_path / "x.json")}


def test_bundled_apps_keep_what_their_files_say(mfcli, examples_dir: Path,
                                                tmp_path: Path) -> None:
    r = mfcli("application", "import-json", "--file", str(examples_dir))
    assert r.code == 0, r.err
    contracts = examples_dir / "contract_to_invoices.multiflexi.app.json"
    assert f"{contracts}: created application" in r.out
    assert f"{contracts}: $.exitcodes: warning: lower-case spelling read as exitCodes" in r.err
    _export_keeps_what_the_upstream_file_said(mfcli)
    _export_to_a_directory_uses_upstream_file_name(mfcli, tmp_path)
    _every_language_of_localized_fields_is_kept(mfcli)
    _cmdparams_template_and_tags(mfcli)
    _lowercase_exitcodes_file_gets_its_exit_codes(mfcli)


def test_importing_the_same_file_twice_updates(mfcli, mf_env, examples_dir: Path) -> None:
    probe = examples_dir / "probe.multiflexi.app.json"
    r = mfcli("application", "import-json", "--file", str(probe))
    assert r.code == 0, r.err
    assert "created application 1 'MultiFlexi Probe'" in r.out
    counts = row_counts(mf_env.db_url)
    r = mfcli("application:import-json", "--file", str(probe))
    assert r.code == 0, r.err
    assert "updated application 1 'MultiFlexi Probe'" in r.out
    assert row_counts(mf_env.db_url) == counts
    assert counts["application"] == 1
    assert counts["app_env_field"] == 8


def test_upsert_by_uuid_replaces_the_parts_as_a_whole(mfcli, examples_dir: Path,
                                                      tmp_path: Path) -> None:
    probe = json.loads((examples_dir / "probe.multiflexi.app.json").read_text())
    assert mfcli("application", "import-json", "--file",
                 str(examples_dir / "probe.multiflexi.app.json")).code == 0
    probe["name"] = {"en": "Probe renamed", "cs": "Sonda přejmenovaná"}
    probe["environment"] = {"ONLY_ONE": {"type": "integer", "description": "x", "defval": 3}}
    del probe["artifacts"]
    changed = tmp_path / "probe2.json"
    changed.write_text(json.dumps(probe))
    r = mfcli("--format", "json", "application", "import-json", "--file", str(changed))
    assert r.code == 0, r.err
    assert r.json[0]["created"] is False and r.json[0]["app_id"] == 1
    shown = mfcli("application", "show", "--id", "1", "--format", "json").json
    assert shown["name"] == "Probe renamed"
    assert shown["localized"]["name"] == {"en": "Probe renamed", "cs": "Sonda přejmenovaná"}
    assert [f["key"] for f in shown["environment"]] == ["ONLY_ONE"]
    assert shown["artifacts"] == []


def test_upsert_by_name_when_the_file_has_no_uuid(mfcli, examples_dir: Path,
                                                  tmp_path: Path) -> None:
    assert mfcli("application", "import-json", "--file",
                 str(examples_dir / "mtr.multiflexi.app.json")).code == 0
    doc = json.loads((examples_dir / "mtr.multiflexi.app.json").read_text())
    uuid = doc.pop("uuid")
    doc["version"] = "9.9.9"
    nouuid = tmp_path / "mtr-nouuid.json"
    nouuid.write_text(json.dumps(doc))
    r = mfcli("--format", "json", "application", "import-json", "--file", str(nouuid))
    assert r.code == 0, r.err
    assert r.json[0]["created"] is False
    apps = mfcli("--format", "json", "application", "list").json
    assert [(a["uuid"], a["version"]) for a in apps] == [(uuid, "9.9.9")]


def test_name_clash_with_another_uuid_is_a_conflict_and_writes_nothing(
    mfcli, mf_env, examples_dir: Path, tmp_path: Path
) -> None:
    assert mfcli("application", "import-json", "--file",
                 str(examples_dir / "mtr.multiflexi.app.json")).code == 0
    doc = json.loads((examples_dir / "mtr.multiflexi.app.json").read_text())
    doc["uuid"] = "00000000-1111-4222-8333-444444444444"
    doc["environment"]["NEW_FIELD"] = {"type": "string", "description": "new"}
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps(doc))
    before = dump_tables(mf_env.db_url)
    r = mfcli("application", "import-json", "--file", str(clash))
    assert r.code == 1
    assert f"{clash}: NOT imported" in r.err
    assert "an application named 'My traceroute' already exists with uuid " \
           "7492e4fe-0192-434b-b9c0-2497a360e17c" in r.err
    assert "00000000-1111-4222-8333-444444444444" in r.err
    assert r.out == ""
    assert dump_tables(mf_env.db_url) == before


def _every_language_of_localized_fields_is_kept(mfcli: Any) -> None:
    shown = mfcli("application", "show", "--uuid", PROBE, "--format", "json").json
    assert shown["name"] == "MultiFlexi Probe"  # English is the main value
    assert shown["localized"]["name"] == {"en": "MultiFlexi Probe", "cs": "MultiFlexi Sonda"}
    assert shown["localized"]["description"]["cs"] == "Nástroj pro testování spouštěče úloh"
    password = next(f for f in shown["environment"] if f["key"] == "PASSWORD")
    assert password["description"] == "An example of secret"
    assert password["localized"]["description"] == {
        "en": "An example of secret", "cs": "Příklad tajemství"}
    exported = json.loads(mfcli("application", "export-json", "--uuid", PROBE).out)
    assert exported["artifacts"][0]["description"] == {
        "en": "Output JSON data file generated by the probe.",
        "cs": "Výstupní soubor JSON dat generovaný sondou.",
    }
    text = mfcli("application", "show", "--uuid", PROBE).out
    assert "Příklad tajemství" not in text  # text view: the English main value
    assert "An example of secret" in text


def test_a_name_without_english_takes_the_first_language(mfcli, tmp_path: Path) -> None:
    app = tmp_path / "czech.json"
    app.write_text(json.dumps({
        "$schema": "https://raw.githubusercontent.com/VitexSoftware/"
                   "php-vitexsoftware-multiflexi-core/refs/heads/main/schema/application.json",
        "name": {"cs": "Česká aplikace", "sk": "Slovenská aplikácia"},
        "description": "d", "executable": "true", "environment": {},
    }))
    r = mfcli("--format", "json", "application", "import-json", "--file", str(app))
    assert r.code == 0, r.err
    shown = mfcli("application", "show", "--id", str(r.json[0]["app_id"]), "--format",
                  "json").json
    assert shown["name"] == "Česká aplikace"
    assert shown["localized"]["name"] == {"cs": "Česká aplikace", "sk": "Slovenská aplikácia"}


def _cmdparams_template_and_tags(mfcli: Any) -> None:
    shown = mfcli("application", "show", "--uuid", PROBE, "--format", "json").json
    assert shown["cmdparams"] == "${FILE_UPLOAD}"
    assert shown["tags"] == ["MultiFlexi", "probe", "task launcher", "testing", "tool"]
    exported = json.loads(mfcli("application", "export-json", "--uuid", PROBE).out)
    assert exported["cmdparamsTemplate"] == "${FILE_UPLOAD}"
    assert "cmdparams" not in exported and "topics" not in exported


def test_legacy_format_imports_and_exports_back_to_legacy_keys(
    mfcli, mf_env, data_dir: Path, tmp_path: Path, fresh_db_url: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    legacy = data_dir / "legacy_2_1.app.json"
    r = mfcli("application", "import-json", "--file", str(legacy))
    assert r.code == 0, r.err
    assert "created application 1 'AbraFlexi Bank Statements Mailer'" in r.out
    # Legacy type names are read as the current ones, and the admin is told.
    for key, old, new in (("ATTACH_PDF", "checkbox", "bool"), ("STATEMENT_FORMAT", "select",
                          "set"), ("LOOKBACK_DAYS", "number", "integer"),
                          ("OUTPUT_DIR", "directory", "file-path")):
        assert (f"{legacy}: $.environment.{key}.type: warning: legacy type {old!r} read as "
                f"{new!r}") in r.err.splitlines()
    shown = mfcli("application", "show", "--uuid", LEGACY, "--format", "json").json
    types = {f["key"]: f["type"] for f in shown["environment"]}
    assert types == {"ATTACH_PDF": "bool", "STATEMENT_FORMAT": "set", "LOOKBACK_DAYS": "integer",
                     "OUTPUT_DIR": "file-path", "TO_EMAIL": "email", "FROM_DATE": "string"}
    assert shown["tags"] == ["AbraFlexi", "Bank", "Mail"]  # topics -> tags
    assert shown["cmdparams"] == "--from {FROM_DATE} --to ${TO_EMAIL}"

    r = mfcli("application", "export-json", "--uuid", LEGACY)
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["topics"] == ["AbraFlexi", "Bank", "Mail"]
    assert "tags" not in doc
    assert doc["cmdparams"] == "--from {FROM_DATE} --to ${TO_EMAIL}"
    assert "cmdparamsTemplate" not in doc
    assert "$schema" not in doc and "schemaVersion" not in doc
    for key in ("setup", "deploy", "package", "multiflexi", "image"):
        assert doc[key] == json.loads(legacy.read_text())[key], key
    assert doc["environment"]["ATTACH_PDF"] == {
        "type": "bool", "description": "Attach statements as PDF", "defval": True,
        "required": False}
    assert doc["environment"]["STATEMENT_FORMAT"]["options"] == {"pdf": "PDF",
                                                                 "isdocx": "ISDOCx"}
    assert "type" not in doc["environment"]["FROM_DATE"]
    assert doc["artifacts"] == json.loads(legacy.read_text())["artifacts"]

    exported = tmp_path / "legacy-exported.json"
    exported.write_text(r.out)
    first = _definitions(mf_env.db_url)
    fresh = fresh_db_url()
    _use_db(monkeypatch, fresh)
    r = mfcli("application", "import-json", "--file", str(exported))
    assert r.code == 0, r.err
    assert "legacy type" not in r.err  # the export uses the current type names
    assert _definitions(fresh) == first
    again = json.loads(mfcli("application", "export-json", "--uuid", LEGACY).out)
    assert again == doc


def _lowercase_exitcodes_file_gets_its_exit_codes(mfcli: Any) -> None:
    shown = mfcli("application", "show", "--uuid", CONTRACTS, "--format", "json").json
    assert shown["exit_codes"] == [
        {"code": 0, "description": "Success", "severity": "success", "retry": False},
        {"code": 1, "description": "General error or failure", "severity": "error",
         "retry": False},
        {"code": 2, "description": "Invalid configuration or missing required environment "
                                   "variable", "severity": "error", "retry": False},
        {"code": 3, "description": "AbraFlexi API error", "severity": "error", "retry": False},
    ]
    doc = json.loads(mfcli("application", "export-json", "--uuid", CONTRACTS).out)
    assert "exitcodes" not in doc
    assert doc["exitCodes"]["3"] == {
        "description": {"en": "AbraFlexi API error", "cs": "Chyba API AbraFlexi"},
        "severity": "error", "retry": False,
    }
    text = mfcli("application", "show", "--uuid", CONTRACTS).out
    assert "AbraFlexi API error" in text


def test_validate_json_accepts_every_bundled_file(mfcli, mf_env, examples_dir: Path) -> None:
    before = dump_tables(mf_env.db_url)
    r = mfcli("--format", "json", "application", "validate-json", "--file", str(examples_dir))
    assert r.code == 0, r.out
    assert [x["valid"] for x in r.json] == [True] * 12
    assert dump_tables(mf_env.db_url) == before


SHAPES = DATA / "upstream_shapes"
HTTP_CODES = SHAPES / "http_status_exit_codes.app.json"
LISTENS = SHAPES / "events_listens.app.json"
VENDOR_CODES = SHAPES / "vendor_status_exit_codes.app.json"  # beyond 32 bits
SHAPE_WARNINGS = {
    LISTENS: [
        "$.events.listens: warning: not a key the schema knows (known: emits, consumes); "
        "kept as written (metadata, not used to run jobs)",
    ],
    HTTP_CODES: [
        '$.exitCodes["404"]: warning: 404 can never be a process exit status (those are '
        "0-255): a process that exits with 404 ends with 148",
        '$.exitCodes["503"]: warning: 503 can never be a process exit status (those are '
        "0-255): a process that exits with 503 ends with 247",
    ],
    VENDOR_CODES: [
        '$.exitCodes["4294967297"]: warning: 4294967297 can never be a process exit status '
        "(those are 0-255): a process that exits with 4294967297 ends with 1",
        '$.exitCodes["99999999999"]: warning: 99999999999 can never be a process exit status '
        "(those are 0-255): a process that exits with 99999999999 ends with 255",
    ],
}


def _warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if ": warning: " in line]


def test_valid_upstream_shapes_our_model_lacks_import_with_warnings(
    mfcli, mf_env, tmp_path: Path, fresh_db_url: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exit codes above 255 and keys upstream's schema does not list inside metadata are
    valid upstream files: they import (exit 0), each oddity is one warning line naming the
    file and the JSON path, and what they say survives export and re-import."""
    expected = [f"{file}: {w}" for file in sorted(SHAPE_WARNINGS) for w in SHAPE_WARNINGS[file]]
    r = mfcli("application", "validate-json", "--file", str(SHAPES))
    assert r.code == 0, r.out
    assert _warning_lines(r.err) == expected
    assert r.out.splitlines() == [f"{file}: valid" for file in sorted(SHAPE_WARNINGS)]
    r = mfcli("--format", "json", "application", "validate-json", "--file", str(SHAPES))
    assert r.code == 0
    assert [(x["file"], x["valid"], x["errors"], x["warnings"]) for x in r.json] == [
        (str(f), True, [], [w.replace(": warning: ", ": ", 1) for w in SHAPE_WARNINGS[f]])
        for f in sorted(SHAPE_WARNINGS)]

    r = mfcli("application", "import-json", "--file", str(SHAPES))
    assert r.code == 0, r.err
    assert "3 imported, 0 failed" in r.out
    assert _warning_lines(r.err) == expected
    r = mfcli("--format", "json", "application", "import-json", "--file", str(HTTP_CODES))
    assert r.code == 0
    assert r.json[0]["warnings"] == [w.replace(": warning: ", ": ", 1)
                                     for w in SHAPE_WARNINGS[HTTP_CODES]]

    shown = mfcli("application", "show", "--uuid", json.loads(HTTP_CODES.read_text())["uuid"],
                  "--format", "json").json
    assert [(e["code"], e["severity"], e["retry"]) for e in shown["exit_codes"]] == [
        (0, "success", False), (1, "error", False), (404, "error", False),
        (503, "warning", True)]
    shown = mfcli("application", "show", "--uuid", json.loads(VENDOR_CODES.read_text())["uuid"],
                  "--format", "json").json
    assert [(e["code"], e["severity"], e["retry"]) for e in shown["exit_codes"]] == [
        (0, "success", False), (4294967297, "error", False), (99999999999, "warning", True)]
    first = _definitions(mf_env.db_url)
    exports = {}
    for file in SHAPE_WARNINGS:
        original = json.loads(file.read_text(encoding="utf-8"))
        r = mfcli("application", "export-json", "--uuid", original["uuid"])
        assert r.code == 0, r.err
        doc = json.loads(r.out)
        for key in ("events", "produces", "exitCodes"):
            if key in original:
                assert doc[key] == {k: {"severity": "error", "retry": False, **v}
                                    for k, v in original[key].items()} \
                    if key == "exitCodes" else original[key], (file.name, key)
        exports[original["uuid"]] = doc
        (tmp_path / file.name).write_text(r.out, encoding="utf-8")

    fresh = fresh_db_url()
    _use_db(monkeypatch, fresh)
    r = mfcli("application", "import-json", "--file", str(tmp_path))
    assert r.code == 0, r.err
    assert _warning_lines(r.err) == [
        f"{tmp_path / file.name}: {w}" for file in sorted(SHAPE_WARNINGS)
        for w in SHAPE_WARNINGS[file]]
    assert _definitions(fresh) == first
    for uuid, doc in exports.items():
        assert json.loads(mfcli("application", "export-json", "--uuid", uuid).out) == doc


def test_application_show_gives_exit_code_meanings_and_artifact_patterns_whole(
    mfcli, examples_dir: Path
) -> None:
    """The text view of one app is what an admin reads to learn what an exit code means and
    which files become artifacts: nothing of it is cut short."""
    r = mfcli("application", "import-json", "--file", str(HTTP_CODES), "--file",
              str(examples_dir / "contract_to_invoices.multiflexi.app.json"))
    assert r.code == 0, r.err
    text = mfcli("application", "show", "--uuid", json.loads(HTTP_CODES.read_text())["uuid"]).out
    rows = [line.split() for line in text.split("\nexit codes:\n")[1].splitlines()]
    assert rows == [
        ["CODE", "SEVERITY", "RETRY", "DESCRIPTION"],
        ["0", "success", "no", "All", "invoices", "accepted"],
        ["1", "error", "no", "Bad", "configuration"],
        ["404", "error", "no", "The", "endpoint", "does", "not", "exist", "(never", "a",
         "process", "exit", "status:", "it", "ends", "as", "148)"],
        ["503", "warning", "yes", "The", "service", "is", "unavailable", "(never", "a",
         "process", "exit", "status:", "it", "ends", "as", "247)"],
    ]
    artifacts = text.split("\nartifacts:\n")[1].split("\n\n")[0].splitlines()
    assert [line.split() for line in artifacts] == [
        ["NAME", "TYPE", "PATH", "(REGEX)", "DESCRIPTION"],
        ["Push", "log", "file", "push-.*\\.log", "What", "was", "sent", "and", "what", "came",
         "back"],
    ]
    text = mfcli("application", "show", "--uuid", CONTRACTS).out
    assert "Invalid configuration or missing required environment variable\n" in text
    assert "…" not in text
