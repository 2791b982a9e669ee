"""The TUI's pure helpers: value checks of the wizard, formatting of daemon values."""

from __future__ import annotations

from datetime import UTC

import pytest

from multiflexi_tui import format as fmt
from multiflexi_tui import validation
from multiflexi_tui.screens.artifact import as_text


@pytest.mark.parametrize(("ftype", "value", "ok"), [
    ("integer", "42", True), ("integer", "-3", True), ("integer", "4.2", False),
    ("float", "0.75", True), ("float", "1e3", True), ("float", "1_5", False),
    ("bool", "true", True), ("bool", "No", True), ("bool", "maybe", False),
    ("email", "ops@acme.example", True), ("email", "ops@acme", False),
    ("url", "https://api.example/x", True), ("url", "file:///tmp/x", True),
    ("url", "api.example", False),
    ("string", "anything at all", True), ("password", "", True),
])
def test_check_follows_the_field_type(ftype: str, value: str, ok: bool) -> None:
    assert (validation.check({"key": "K", "type": ftype}, value) is None) is ok


def test_set_fields_take_only_their_options() -> None:
    field = {"key": "MODE", "type": "set", "options": {"fast": "Fast", "slow": "Slow"}}
    assert validation.check(field, "fast") is None
    assert "not one of: fast, slow" in str(validation.check(field, "medium"))
    assert validation.options_of(["a", {"value": "b", "label": "Bee"}]) == [
        ("a", "a"), ("b", "Bee")]


def test_required_and_defaults() -> None:
    required = {"key": "URL", "type": "url", "required": True}
    assert validation.missing(required, "  ")
    assert not validation.missing({"key": "X", "type": "string"}, "")
    assert validation.default_text({"type": "bool", "default": "False"}) == "false"
    assert validation.default_text({"type": "bool", "default": True}) == "true"


def test_an_edited_value_is_stored_only_where_it_differs_from_the_default() -> None:
    """The template editor: a value back at the application's default is unset (the
    template follows the application again); a key the app does not declare is unset
    when emptied."""
    field = {"key": "MODE", "type": "string", "default": "fast"}
    assert validation.config_change(field, "slow", stored=False) == "set"
    assert validation.config_change(field, "slow", stored=True) == "set"
    assert validation.config_change(field, "fast", stored=True) == "unset"
    assert validation.config_change(field, "fast", stored=False) is None
    assert validation.config_change(field, "", stored=True) == "set"  # empty on purpose
    assert validation.config_change(None, "", stored=True) == "unset"
    assert validation.config_change(None, "x", stored=True) == "set"
    flag = {"key": "DEBUG", "type": "bool", "default": False}
    assert validation.config_change(flag, "false", stored=True) == "unset"
    assert validation.as_text(flag, "True") == "true" and validation.as_text(flag, None) == ""


def test_tags_are_comma_separated() -> None:
    from multiflexi_tui.screens.template_edit import tags_of

    assert tags_of(" bank, nightly ,,acme ") == ["bank", "nightly", "acme"]
    assert tags_of("") == []
    assert validation.default_text({"type": "integer", "default": 5}) == "5"


def test_only_values_that_differ_from_the_defaults_are_sent() -> None:
    fields = [{"key": "A", "default": "1"}, {"key": "B", "default": None},
              {"key": "C", "default": "x"}, {"key": "D", "type": "bool", "default": False}]
    values = {"A": "1", "B": "", "C": "", "D": "true"}
    assert validation.config_to_send(fields, values) == {"C": "", "D": "true"}


def test_times_and_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "LOCAL_ZONE", UTC)
    assert fmt.short_time("2024-05-01T06:00:00Z") == "05-01 06:00"
    assert fmt.full_time("2024-05-01T06:00:00Z") == "2024-05-01 06:00:00 +00:00"
    assert fmt.short_time(None) == fmt.full_time("garbage") == "—"
    assert fmt.duration("2024-05-01T06:00:00Z", "2024-05-01T06:00:02.5Z") == "2.5s"
    assert fmt.duration("2024-05-01T06:00:00Z", "2024-05-01T07:05:00Z") == "1h05m"
    assert fmt.duration("2024-05-01T06:00:00Z", None) == ""
    assert fmt.seconds_text(125) == "2m05s" and fmt.seconds_text(3 * 86400) == "3d00h"
    assert fmt.due_text({"local": "2024-03-31T03:30:00+02:00"}) == "Sun 2024-03-31 03:30 +0200"


def test_daemon_values_as_text() -> None:
    assert fmt.schedule_text({"interv": "c", "cron": "*/5 * * * *"}) == "cron */5 * * * *"
    assert fmt.schedule_text({"interv": "h"}) == "hourly"
    job = {"exitcode": 3, "exit_meaning": {"description": {"en": "Bad config"},
                                           "severity": "error", "retry": True}}
    assert fmt.exit_meaning_text(job) == "3 (error, retried: Bad config)"
    assert "declares no meaning" in fmt.exit_meaning_text({"exitcode": 9})
    assert fmt.last_job_text({"id": 7, "state": "failed", "exitcode": 2}).plain == (
        "✘ failed (2) #7")
    assert fmt.state_text("running").plain == "▶ running"
    assert fmt.size_text(2048) == "2.0 KiB" and fmt.size_text(5) == "5 B"
    assert fmt.text_of({"cs": "Ahoj", "en": "Hello"}) == "Hello"


def test_a_template_switched_off_by_an_action_says_why() -> None:
    assert fmt.active_text({"active": True, "inactive_reason": None}).plain == "yes"
    assert fmt.active_text({"active": False, "inactive_reason": None}).plain == "no"
    stopped = fmt.active_text({"active": False, "inactive_reason": "bank login refused"})
    assert stopped.plain == "no: bank login refused" and "yellow" in str(stopped.style)
    long = fmt.active_text({"active": False, "inactive_reason":
                            "stopped by a Stop action after job 12345 failed"})
    assert long.plain == "no: stopped by a Stop action af…"
    assert len(long.plain) == fmt.REASON_WIDTH


def test_artifact_text_or_binary() -> None:
    assert as_text(b"line\n", "text/plain") == "line\n"
    assert as_text(b"\x89PNG\x00\x00", "image/png") is None
    assert as_text(b"caf\xe9", "text/csv") == "caf\ufffd"
    assert as_text(b"caf\xe9", "application/octet-stream") is None


def test_the_socket_is_found_like_the_cli_finds_it(tmp_path: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    from multiflexi_tui.app import default_socket

    conf = Path(str(tmp_path)) / "multiflexi.conf"
    conf.write_text('socket = "/srv/mf/daemon.sock"\n')
    monkeypatch.delenv("MULTIFLEXI_SOCKET", raising=False)
    monkeypatch.setenv("MULTIFLEXI_CONFIG", str(conf))
    assert default_socket() == "/srv/mf/daemon.sock"
    monkeypatch.setenv("MULTIFLEXI_SOCKET", "/env/wins.sock")
    assert default_socket() == "/env/wins.sock"
    monkeypatch.delenv("MULTIFLEXI_SOCKET")
    conf.write_text("this is not TOML")
    assert default_socket() == "/run/multiflexi/multiflexid.sock"
