"""Artifact collection with the real upstream app definitions, limits and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multiflexi import examples
from multiflexid.artifacts import collect
from multiflexid.domain.appdef import AppDefinition
from multiflexid.domain.appjson import parse_app

MB = 1024 * 1024


def _app(filename: str) -> AppDefinition:
    path = next(p for p in examples.app_files() if p.name == filename)
    app, _warnings = parse_app(path.read_text(), str(path))
    return app


def _touch(workdir: Path, name: str, data: bytes | str = b"x") -> None:
    path = workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _names(found) -> dict[str, str | None]:  # type: ignore[no-untyped-def]
    return {f.filename: f.name for f in found.files}


def test_probe_collects_its_env_report(tmp_path: Path) -> None:
    app = _app("probe.multiflexi.app.json")
    _touch(tmp_path, "env_report.json", "{}")
    _touch(tmp_path, "env_reportXjson", "{}")  # "." in the pattern is a regex dot...
    _touch(tmp_path, "other.log")
    env = {"RESULT_FILE": str(tmp_path / "env_report.json")}
    found = collect(tmp_path, app.artifacts, env, max_file=MB, max_job=MB)
    assert _names(found) == {"env_report.json": "env_report.json",
                             "env_reportXjson": "env_report.json"}
    assert found.left_behind == ["other.log"]


def test_redmine_pattern_is_filled_from_the_job_environment(tmp_path: Path) -> None:
    app = _app("redmine2abraflexi.multiflexi.app.json")
    _touch(tmp_path, "redmine2abraflexi_web+shop.json", "{}")
    _touch(tmp_path, "redmine2abraflexi_other.json", "{}")
    env = {"REDMINE_PROJECT": "web+shop"}  # '+' is escaped: matched literally
    found = collect(tmp_path, app.artifacts, env, max_file=MB, max_job=MB)
    assert _names(found) == {
        "redmine2abraflexi_web+shop.json": "Redmine2AbraFlexi JSON Report"}
    assert found.left_behind == ["redmine2abraflexi_other.json"]


def test_monthly_digest_artifact_is_its_result_file(tmp_path: Path) -> None:
    app = _app("monthly_digest.multiflexi.app.json")
    _touch(tmp_path, "digest.html", "<html></html>")
    env = {"RESULT_FILE": str(tmp_path / "digest.html")}
    found = collect(tmp_path, app.artifacts, env, max_file=MB, max_job=MB)
    assert _names(found) == {"digest.html": "Monthly Digest Report"}
    assert found.files[0].content_type == "text/html"  # from the declared type "html"
    assert "not a valid report" in found.warnings[0]  # HTML is no JSON report


def test_directory_artifact_takes_every_file_below_it(tmp_path: Path) -> None:
    app = _app("cs_statement_downloader.multiflexi.app.json")
    _touch(tmp_path, "csas_statement_downloader.json", "{}")
    _touch(tmp_path, "2026-01.pdf", b"%PDF")
    _touch(tmp_path, "sub/2026-02.xml", "<x/>")
    found = collect(tmp_path, app.artifacts, {}, max_file=MB, max_job=MB)
    assert _names(found) == {
        "csas_statement_downloader.json": "Output JSON report",
        "2026-01.pdf": "Statements Directory",
        "sub/2026-02.xml": "Statements Directory",
    }
    assert found.left_behind == []


def test_every_real_app_definition_compiles_to_usable_patterns(tmp_path: Path) -> None:
    for path in examples.app_files():
        app, _ = parse_app(path.read_text(), str(path))
        found = collect(tmp_path, app.artifacts, {}, max_file=MB, max_job=MB)
        assert found.files == []  # an empty job directory: nothing, and no crash


def test_size_limits_record_skipped_files(tmp_path: Path) -> None:
    app = _app("cs_statement_downloader.multiflexi.app.json")
    _touch(tmp_path, "a.pdf", b"a" * 600)
    _touch(tmp_path, "b.pdf", b"b" * 600)
    _touch(tmp_path, "huge.pdf", b"h" * 5000)
    found = collect(tmp_path, app.artifacts, {}, max_file=1000, max_job=1000)
    by_name = {f.filename: f for f in found.files}
    assert by_name["a.pdf"].content == b"a" * 600 and not by_name["a.pdf"].skipped
    assert by_name["b.pdf"].skipped and "per-job limit of 1000" in (by_name["b.pdf"].note or "")
    assert by_name["huge.pdf"].skipped and "5000 bytes" in (by_name["huge.pdf"].note or "")
    assert by_name["huge.pdf"].sha256 and by_name["huge.pdf"].size == 5000


@pytest.mark.parametrize(("report", "valid"), [
    ({"producer": "probe", "status": "warning", "timestamp": "2026-05-01T10:00:00Z",
      "message": "2 of 3 done", "metrics": {"done": 2, "total": 3}}, True),
    ({"producer": "probe", "status": "maybe", "timestamp": "2026-05-01T10:00:00Z"}, False),
    ({"status": "success", "timestamp": "2026-05-01T10:00:00Z"}, False),
    ({"producer": "p", "status": "success", "timestamp": "yesterday"}, False),
])
def test_result_report_valid_or_kept_as_plain_artifact(
    tmp_path: Path, report: dict, valid: bool
) -> None:
    _touch(tmp_path, "out.json", json.dumps(report))
    found = collect(tmp_path, [], {"RESULT_FILE": str(tmp_path / "out.json")},
                    max_file=MB, max_job=MB)
    assert [f.filename for f in found.files] == ["out.json"]
    if valid:
        assert found.report is not None
        assert (found.report.status, found.report.message) == ("warning", "2 of 3 done")
        assert found.report.metrics == {"done": 2, "total": 3}
    else:
        assert found.report is None
        assert "not a valid report" in (found.files[0].note or "")
        assert found.warnings


def test_missing_result_file_is_a_warning(tmp_path: Path) -> None:
    found = collect(tmp_path, [], {"RESULT_FILE": str(tmp_path / "none.json")},
                    max_file=MB, max_job=MB)
    assert found.files == [] and "was not written" in found.warnings[0]
