"""What of an app file refuses it and what is only reported (domain rules, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from multiflexid.domain.appjson import (
    SCHEMA_URL,
    AppJsonError,
    app_from_data,
    export_app,
    split_problem,
    validate_app,
)

KEPT = "kept as written (metadata, not used to run jobs)"


def _app(**extra: Any) -> dict[str, Any]:
    return {"$schema": SCHEMA_URL, "name": "App", "description": "d", "executable": "app",
            "environment": {"URL": {"type": "url", "description": "where"}}, **extra}


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"kubernetes": {"helm": {"enabled": True}}},
     ["$.kubernetes.helm.chart: required key is missing",
      "$.kubernetes.helm.releaseName: required key is missing"]),
    ({"kubernetes": {"helm": {"releaseName": "Not_DNS"}}},
     ["$.kubernetes.helm.releaseName: 'Not_DNS' does not match "
      "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'"]),
    ({"produces": {"report": {"patterns": ["*.json"]}}},
     ["$.produces.report.format: required key is missing"]),
    ({"events": {"emits": {"x": {"operation": "explode"}}}},
     ["$.events.emits.x.operation: 'explode' is not one of: create, update, delete, any"]),
    ({"events": []}, ["$.events: [] is not of type 'object'"]),
    ({"author": 42}, ["$.author: 42 is not of type 'string'"]),
])
def test_metadata_the_schema_refuses_is_kept_with_a_warning(
    metadata: dict[str, Any], expected: list[str]
) -> None:
    app, warnings = app_from_data(_app(**metadata))
    assert warnings == [f"{w}; {KEPT}" for w in expected]
    key = next(iter(metadata))
    assert app.extra[key] == metadata[key]
    assert export_app(app)[key] == metadata[key]


@pytest.mark.parametrize(("change", "error"), [
    ({"executable": ["app"]}, "$.executable: ['app'] is not of type 'string'"),
    ({"cmdparamsTemplate": 1}, "$.cmdparamsTemplate: 1 is not of type 'string'"),
    ({"cmdparams": {"a": 1}}, "$.cmdparams: must be a string, not an object"),
    ({"environment": {"URL": {"type": "uri"}}},
     "$.environment.URL.type: 'uri' is not one of: string, file-path, email, url, integer, "
     "float, bool, password, set, text"),
    ({"environment": {"A=B": {"type": "string"}}},
     '$.environment["A=B"]: not usable as an environment variable name'),
    ({"artifacts": [{"name": "a", "path": "x", "type": "file", "glob": "*"}]},
     "$.artifacts[0].glob: not a key the schema knows (known: name, path, type, description)"),
    ({"exitCodes": {"3": {"description": "d", "retry": "yes"}}},
     "$.exitCodes[\"3\"].retry: 'yes' is not of type 'boolean'"),
])
def test_what_changes_a_run_is_still_refused(change: dict[str, Any], error: str) -> None:
    with pytest.raises(AppJsonError) as caught:
        app_from_data(_app(**change))
    assert error in caught.value.problems


def test_exit_codes_above_255_are_kept_with_what_a_process_would_return() -> None:
    app, warnings = app_from_data(_app(exitCodes={
        "0": {"description": "ok"}, "256": {"description": "wraps to zero"}}))
    assert [e.code for e in app.exit_codes] == [0, 256]
    assert warnings == ['$.exitCodes["256"]: 256 can never be a process exit status (those '
                        "are 0-255): a process that exits with 256 ends with 0"]


def test_exit_code_keys_must_be_ascii_digits_in_either_spelling() -> None:
    errors, _ = validate_app(_app(exitcodes={"\u00b2": "superscript two", "1": "error"}))
    assert errors == ['$.exitcodes["\u00b2"]: exit codes must be non-negative whole numbers']


@pytest.mark.parametrize("problem", [
    "$.name: must not be empty",
    '$.exitCodes["404"]: 404 can never be: 148',
    '$.environment["A: B"]: not usable',
    "$.artifacts[0].path: not a valid regular expression: x",
    "$.$schema: missing; assumed",
])
def test_split_problem_finds_the_path_however_the_key_is_written(problem: str) -> None:
    path, message = split_problem(problem)
    assert f"{path}: {message}" == problem
    assert not message.startswith(("[", ".", '"'))
    assert ": " not in path.replace('"A: B"', "")
