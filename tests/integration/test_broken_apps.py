"""A corpus of broken app files: each gives its documented error and writes nothing.

Errors are ``<json path>: <message>`` (invalid JSON: ``file:line:column: ...``). The
database is compared row by row before and after, so a half-import cannot hide.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import DATA, dump_tables

BROKEN = DATA / "broken_apps"
ENV_TYPES = "string, file-path, email, url, integer, float, bool, password, set, text"

# file -> every problem it must be reported with, in order
EXPECTED: dict[str, list[str]] = {
    "trailing_comma.app.json": [
        f"{BROKEN / 'trailing_comma.app.json'}:10:29: invalid JSON: trailing comma before '}}'"
    ],
    "executable_number.app.json": ["$.executable: 42 is not of type 'string'"],
    "required_string.app.json": [
        "$.environment.API_URL.required: 'yes' is not of type 'boolean'"
    ],
    "missing_executable.app.json": ["$.executable: required key is missing"],
    "missing_environment.app.json": ["$.environment: required key is missing"],
    "missing_name.app.json": ["$.name: required key is missing"],
    "unknown_env_type.app.json": [
        f"$.environment.FOO.type: 'datetime' is not one of: {ENV_TYPES}"
    ],
    "duplicate_key.app.json": [
        "$.environment.API_URL.required: duplicate key (a later value would win)"
    ],
    "non_hex_uuid.app.json": [
        "$.uuid: '6a1f2e3d-4c5b-4a69-8z7y-0f1e2d3c4b5a' is not a valid uuid"
    ],
    "bad_localized.app.json": [
        "$.description: must be a string or an object mapping language codes (en, cs, ...) "
        'to strings, not {"english": "a language code must be a known one like en"}'
    ],
    "exit_code_not_numeric.app.json": [
        "$.exitCodes.fail: exit codes must be non-negative whole numbers"
    ],
    "exit_code_too_large.app.json": [
        '$.exitCodes["99999999999999999999"]: too large to keep (at most '
        "9223372036854775807)"
    ],
    "exit_code_twice.app.json": ['$.exitCodes["007"]: the same exit code as "7"'],
    "cmdparams_not_a_string.app.json": ["$.cmdparams: must be a string, not an array"],
    "metadata_and_a_bad_type.app.json": [
        f"$.environment.WAIT.type: 'duration' is not one of: {ENV_TYPES}"
    ],
    "artifact_bad_regex.app.json": [
        "$.artifacts[0].path: not a valid regular expression: "
        "unterminated character set at position 6"
    ],
    "top_level_array.app.json": [
        "$: an application definition must be a JSON object, not an array"
    ],
    "name_too_long.app.json": ["$.name: longer than 255 characters (308)"],
    "several_problems.app.json": [
        "$.executable: required key is missing",
        "$.environment.DEBUG.required: 'no' is not of type 'boolean'",
        f"$.environment.DEBUG.type: 'checkbox-ish' is not one of: {ENV_TYPES}",
        "$.environment.lower_case.required: 1 is not of type 'boolean'",
        "$.exitCodes[\"300\"].severity: 'fatal' is not one of: success, info, warning, error, "
        "critical",
        "$.uuid: 'not-a-uuid' is not a valid uuid",
        "$.name: must not be empty",
    ],
}
# file -> its warnings (metadata is never a reason to refuse a file, but is reported)
WARNINGS: dict[str, list[str]] = {
    "metadata_and_a_bad_type.app.json": [
        "$.kubernetes.helm.hooks: not a key the schema knows (known: enabled, releaseName, "
        "namespace, chart, valuesFiles, set, upgradeInstall, timeoutSeconds, atomic, wait); "
        "kept as written (metadata, not used to run jobs)",
    ],
    "several_problems.app.json": [
        '$.exitCodes["300"]: 300 can never be a process exit status (those are 0-255): a '
        "process that exits with 300 ends with 44",
        "$.environment.lower_case: not an upper-case name (^[A-Z0-9_]+$); kept as written",
    ],
}


@pytest.fixture
def db_url(reused_db_url: str) -> str:
    """This module's tests share one database per backend, emptied before each test."""
    return reused_db_url


def test_the_corpus_is_complete() -> None:
    assert sorted(p.name for p in BROKEN.iterdir()) == sorted(EXPECTED)


@pytest.fixture
def populated(mfcli, examples_dir: Path) -> None:
    """Something in every application table, so that a stray write would show."""
    r = mfcli("application", "import-json", "--file",
              str(examples_dir / "probe.multiflexi.app.json"),
              "--file", str(examples_dir / "contract_to_invoices.multiflexi.app.json"))
    assert r.code == 0, r.err
    assert mfcli("company", "create", "--name", "Acme", "--slug", "acme").code == 0


def _check_refused(mfcli: Any, path: Path, expected: list[str]) -> None:
    warnings = WARNINGS.get(path.name, [])
    as_lines = [f"{path}: {w.replace(': ', ': warning: ', 1)}" for w in warnings]
    r = mfcli("application", "import-json", "--file", str(path))
    assert r.code == 1
    assert r.out == ""
    lines = r.err.splitlines()
    assert lines[0] == f"{path}: NOT imported"
    assert [line.strip() for line in lines[1:] if line not in as_lines] == expected
    assert [line for line in lines if line in as_lines] == as_lines

    r = mfcli("--format", "json", "application", "import-json", "--file", str(path))
    assert r.code == 1
    assert r.err == ""
    [res] = r.json
    assert (res["ok"], res["app_id"], res["errors"]) == (False, None, expected)

    r = mfcli("application", "validate-json", "--file", str(path))
    assert r.code == 1
    assert r.out.splitlines() == expected
    assert r.err.splitlines() == as_lines

    r = mfcli("application:validate-json", "--file", str(path), "--format", "json")
    assert r.code == 1
    assert r.json == {"file": str(path), "valid": False, "errors": expected,
                      "warnings": warnings}


def test_each_broken_file_is_refused_with_its_errors_and_nothing_written(
    mfcli, mf_env, populated: None
) -> None:
    """One database for the whole corpus: after every file it must be exactly as before."""
    before = dump_tables(mf_env.db_url)
    failures = {}
    for name, expected in sorted(EXPECTED.items()):
        try:
            _check_refused(mfcli, BROKEN / name, expected)
            assert dump_tables(mf_env.db_url) == before, "the database changed"
        except AssertionError as exc:
            failures[name] = (str(exc).splitlines() or ["assertion failed"])[0]
    assert failures == {}


def test_invalid_json_points_at_line_and_column(mfcli, tmp_path: Path) -> None:
    """Not only trailing commas: any syntax error is located."""
    bad = tmp_path / "unquoted.json"
    bad.write_text('{\n  "name": "x",\n  "executable": bogus\n}\n')
    r = mfcli("application", "validate-json", "--file", str(bad))
    assert r.code == 1
    assert r.out == f"{bad}:3:17: invalid JSON: Expecting value\n"
    bad.write_text('[1,\n 2,\n]')
    r = mfcli("application", "validate-json", "--file", str(bad))
    assert r.out == f"{bad}:2:3: invalid JSON: trailing comma before ']'\n"


def test_a_broken_update_leaves_the_existing_app_untouched(
    mfcli, mf_env, examples_dir: Path, tmp_path: Path, populated: None
) -> None:
    doc = json.loads((examples_dir / "probe.multiflexi.app.json").read_text())
    doc["name"] = "Probe, new version"
    doc["environment"]["PROBE_SLEEP"]["type"] = "duration"
    broken = tmp_path / "probe-broken.json"
    broken.write_text(json.dumps(doc))
    before = dump_tables(mf_env.db_url)
    r = mfcli("application", "import-json", "--file", str(broken))
    assert r.code == 1
    assert "$.environment.PROBE_SLEEP.type: 'duration' is not one of" in r.err
    assert dump_tables(mf_env.db_url) == before


def test_files_of_one_import_sharing_a_uuid_are_all_refused(
    mfcli, mf_env, populated: None
) -> None:
    folder = DATA / "duplicate_uuid"
    first, second = folder / "first.app.json", folder / "second.app.json"
    uuid = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    before = dump_tables(mf_env.db_url)
    r = mfcli("application", "import-json", "--file", str(folder))
    assert r.code == 1
    assert r.err.splitlines() == [
        f"{first}: NOT imported",
        f"  $.uuid: {uuid} is also the uuid of {second}; not imported",
        f"{second}: NOT imported",
        f"  $.uuid: {uuid} is also the uuid of {first}; not imported",
        "0 imported, 2 failed",
    ]
    assert dump_tables(mf_env.db_url) == before
    r = mfcli("application", "validate-json", "--file", str(folder))
    assert r.code == 1
    assert r.out.splitlines() == [
        f"{first}: $.uuid: {uuid} is also the uuid of {second}",
        f"{second}: $.uuid: {uuid} is also the uuid of {first}",
    ]
    # Each on its own is fine.
    r = mfcli("application", "validate-json", "--file", str(first))
    assert r.code == 0


def test_directory_mixing_good_and_bad_files_imports_the_good_ones_whole(
    mfcli, mf_env, examples_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "apps"
    shutil.copytree(BROKEN, folder)
    good = ["mtr.multiflexi.app.json", "probe.multiflexi.app.json",
            "redmine2abraflexi.multiflexi.app.json"]
    for name in good:
        shutil.copy(examples_dir / name, folder / name)
    r = mfcli("application", "import-json", "--file", str(folder))
    assert r.code == 1
    for name in good:
        assert f"{folder / name}: created application" in r.out
    for name in EXPECTED:
        assert f"{folder / name}: NOT imported" in r.err
    assert r.err.splitlines()[-1] == f"3 imported, {len(EXPECTED)} failed"

    rows = dump_tables(mf_env.db_url)
    assert len(rows["application"]) == 3
    app_ids = {row[0] for row in rows["application"]}
    # No part of an application exists without its application.
    env_counts = {}
    for row in rows["app_env_field"]:
        assert row[1] in app_ids
        env_counts[row[1]] = env_counts.get(row[1], 0) + 1
    assert sorted(env_counts.values()) == [3, 8, 18]  # mtr, probe, redmine2abraflexi whole
    assert {row[1] for row in rows["app_artifact"]} <= app_ids
    assert {row[1] for row in rows["app_exit_code"]} <= app_ids
    names = sorted(a["name"] for a in mfcli("--format", "json", "application", "list").json)
    assert names == ["MultiFlexi Probe", "My traceroute", "Redmine2AbraFlexi"]


def test_an_unreadable_or_missing_file_is_reported(mfcli, mf_env, tmp_path: Path) -> None:
    missing = tmp_path / "nope.app.json"
    r = mfcli("application", "import-json", "--file", str(missing))
    assert r.code == 1
    assert r.err.splitlines() == [f"{missing}: NOT imported", "  file not found"]
    latin = tmp_path / "latin1.app.json"
    latin.write_bytes('{"name": "Úroky"}'.encode("latin-1"))
    r = mfcli("application", "import-json", "--file", str(latin))
    assert r.code == 1
    assert "not UTF-8 text (byte 10)" in r.err
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("import-json", "validate-json"):
        r = mfcli("application", command, "--file", str(empty))
        assert r.code == 1
        assert r.err == f"multiflexi-cli: error: no *.json files found in {empty}\n"
        r = mfcli("application", command, "--file", str(empty), "--format", "json")
        assert json.loads(r.out)["error"]["message"] == f"no *.json files found in {empty}"
