"""Pilot test of the activation wizard, end to end against the real daemon."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select

from multiflexi_tui import format as fmt
from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.main import MainScreen
from multiflexi_tui.screens.wizard import WizardScreen
from multiflexi_tui.widgets.field_input import FieldInput
from multiflexi_tui.widgets.resource_view import ResourceView
from multiflexid.core import Core
from tests.support.daemon import DaemonProcess
from tests.support.factory import shell_app
from tests.tui.support import (
    import_app,
    notified,
    run_app,
    screen_of,
    screen_text,
    wait_for,
    wait_text,
)

NOW = datetime(2024, 5, 1, 6, 2, tzinfo=UTC)


def field(screen: WizardScreen, key: str) -> FieldInput:
    return screen.query_one(f"#field-{key}", FieldInput)


async def type_into(pilot: Pilot[Any], widget: Any, text: str) -> None:
    widget.focus()
    await pilot.pause()
    await pilot.press("ctrl+u", *text) if text else await pilot.press("ctrl+u")


def test_wizard_creates_a_template(daemon: DaemonProcess, seeded: dict[str, int],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "CLOCK", lambda: NOW)

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        templates = app.screen.query_one("#templates-view", ResourceView)
        await wait_for(pilot, lambda: templates.table.row_count == 4, "templates")
        await pilot.press("n")
        wizard: WizardScreen = await screen_of(pilot, WizardScreen)
        # 1. application
        await wait_text(pilot, "Wizardry")
        assert "step 1 of 6: application" in screen_text(app)
        await pilot.press("down", "enter")  # Reporter, Wizardry, Shell
        # 2. company
        await wait_text(pilot, "step 2 of 6: company · Wizardry")
        await pilot.press("enter")  # acme
        # 3. name and schedule, with the next due times from the daemon
        await wait_text(pilot, "step 3 of 6")
        name = wizard.query_one("#name", Input)
        assert app.focused is name and name.value == "Wizardry"
        await type_into(pilot, name, "wiz every 5")
        interval = wizard.query_one("#interv", Select)
        interval.focus()
        await pilot.press("enter", "down", "down", "down", "down", "enter")  # d → c
        await wait_for(pilot, lambda: interval.value == "c", "cron chosen")
        cron = wizard.query_one("#cron", Input)
        assert not cron.disabled
        await type_into(pilot, cron, "*/5 * * * *")
        await type_into(pilot, wizard.query_one("#timezone", Input), "Mars/Base")
        await wait_text(pilot, "not a known IANA time zone")
        await pilot.press("ctrl+n")  # refused: the schedule is wrong
        await wait_text(pilot, "schedule: timezone")
        assert wizard.step == "schedule"
        await type_into(pilot, wizard.query_one("#timezone", Input), "Europe/Prague")
        await wait_text(pilot, "Wed 2024-05-01 08:05 +0200")  # 06:05 UTC, from NOW
        assert "Wed 2024-05-01 08:25 +0200" in screen_text(app)  # five of them
        await pilot.press("ctrl+n")
        # 4. configuration: typed inputs, required marked, secrets masked, defaults shown
        await wait_text(pilot, "step 4 of 6: configuration")
        assert field(wizard, "COUNT").value == "1"  # the default
        assert field(wizard, "MODE").value == "fast"
        assert field(wizard, "VERBOSE").value == "false"
        token = field(wizard, "TOKEN").query_one(Input)
        assert token.password and token.value == "tok-SECRET-123"
        assert "tok-SECRET-123" not in screen_text(app)
        assert field(wizard, "COUNT").query_one(Input).type == "integer"
        assert "API_URL *" in str(field(wizard, "API_URL").query_one(".label").render())
        await type_into(pilot, field(wizard, "MAIL").query_one(Input), "not-an-email")
        await type_into(pilot, field(wizard, "RATIO").query_one(Input), "1_5")  # input allows
        await pilot.press("ctrl+n")
        await wait_text(pilot, "field(s) need attention")
        problems = screen_text(app)
        assert wizard.step == "config"
        assert "MAIL" in problems and "API_URL" in problems
        assert "PASSWORD" not in problems.split("need attention")[1]  # a credential has it
        assert field(wizard, "MAIL").has_class("-invalid")
        assert field(wizard, "RATIO").has_class("-invalid")
        await type_into(pilot, field(wizard, "MAIL").query_one(Input), "ops@acme.example")
        await type_into(pilot, field(wizard, "RATIO").query_one(Input), "0.75")
        await type_into(pilot, field(wizard, "API_URL").query_one(Input), "https://api.example")
        await pilot.press("ctrl+n")
        # 5. credentials of acme: the only one of the required type is preselected
        await wait_text(pilot, "step 5 of 6: credentials")
        await wait_text(pilot, "probe secret (Probe)")
        assert "Must provide:" in screen_text(app) and wizard.from_credentials == {"PASSWORD"}
        await pilot.press("space")  # unchoose it: PASSWORD would be missing
        await pilot.press("ctrl+n")
        await wait_text(pilot, "no chosen credential provides it: PASSWORD")
        await pilot.press("space", "ctrl+n")
        # 6. review, then create
        await wait_text(pilot, "step 6 of 6")
        review = screen_text(app)
        for text in ("wiz every 5", "cron */5 * * * *, Europe/Prague", "MAIL=ops@acme.example",
                     "probe secret (Probe)"):
            assert text in review, text
        await pilot.press("ctrl+n")
        await screen_of(pilot, MainScreen)
        created = await wait_for(pilot, lambda: [r for r in templates.records.values()
                                                 if r["name"] == "wiz every 5"], "the new row")
        rt = daemon.call("runtemplate.get", id=created[0]["id"])
        assert (rt["interv"], rt["cron"], rt["timezone"]) == ("c", "*/5 * * * *",
                                                              "Europe/Prague")
        assert (rt["app"], rt["company"], rt["active"]) == ("Wizardry", "acme", True)
        assert rt["credentials"] == [seeded["credential"]]
        # only what differs from the app's defaults is stored on the template
        assert sorted(rt["config_keys"]) == ["API_URL", "MAIL", "RATIO"]
        env = {e["key"]: e["value"] for e in
               daemon.call("runtemplate.env", id=rt["id"])["environment"]}
        assert env["API_URL"] == "https://api.example" and env["RATIO"] == "0.75"
        assert env["PASSWORD"] == "********"
        assert templates.current()["id"] == rt["id"]  # type: ignore[index]
        assert notified(app, f"run template #{rt['id']} wiz every 5 created")

    run_app(daemon.socket, scenario)


def test_wizard_back_and_abandon(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await pilot.press("n")
        wizard: WizardScreen = await screen_of(pilot, WizardScreen)
        await wait_text(pilot, "Reporter")
        await pilot.press("enter")
        await wait_text(pilot, "step 2 of 6")
        await pilot.press("escape")  # back one step
        await wait_text(pilot, "step 1 of 6")
        await pilot.press("enter", )
        await wait_text(pilot, "step 2 of 6")
        await pilot.press("enter")
        await wait_text(pilot, "step 3 of 6")
        assert wizard.step == "schedule"
        await pilot.press("ctrl+x")  # abandon, even from a text field
        await screen_of(pilot, MainScreen)
        assert len(daemon.call("runtemplate.list")["items"]) == 4

    run_app(daemon.socket, scenario)


def test_wizard_offers_container_executors_only_for_an_image(
    daemon: DaemonProcess, seeded: dict[str, int], tui_core: Core
) -> None:
    boxed = shell_app("Boxed", "echo boxed")
    boxed["ociimage"] = "docker.io/acme/boxed:1.2"
    boxed_id = import_app(tui_core, boxed)

    async def to_review(pilot: Pilot[Any]) -> None:
        for step in ("4", "5", "6"):
            await pilot.press("ctrl+n")
            await wait_text(pilot, f"step {step} of 6")

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3", "n")
        wizard: WizardScreen = await screen_of(pilot, WizardScreen)
        await wait_text(pilot, "Boxed")
        await pilot.press("down", "enter")  # Wizardry: no image
        await wait_text(pilot, "step 2 of 6")
        await pilot.press("enter")  # acme
        await wait_text(pilot, "step 3 of 6")
        executor = wizard.query_one("#executor", Select)
        assert [value for _label, value in executor._options] == ["Native"]
        await pilot.press("ctrl+x")
        await screen_of(pilot, MainScreen)

        await pilot.press("n")
        wizard = await screen_of(pilot, WizardScreen)
        await wait_text(pilot, "Boxed")
        await pilot.press("down", "down", "down", "enter")  # Boxed: an image
        await wait_text(pilot, "step 2 of 6")
        await pilot.press("enter")
        await wait_text(pilot, "step 3 of 6: name and schedule · Boxed")
        executor = wizard.query_one("#executor", Select)
        assert [value for _label, value in executor._options] == ["Native", "Podman", "Docker"]
        assert executor.value == "Native"
        executor.focus()
        await pilot.press("enter", "down", "down", "enter")
        await wait_for(pilot, lambda: executor.value == "Docker", "Docker chosen")
        await to_review(pilot)
        assert "Executor      Docker (docker.io/acme/boxed:1.2)" in screen_text(app)
        await pilot.press("ctrl+n")
        await screen_of(pilot, MainScreen)
        made = await wait_for(pilot, lambda: [
            rt for rt in daemon.call("runtemplate.list")["items"] if rt["app_id"] == boxed_id],
            "the new template")
        assert [(rt["name"], rt["executor"]) for rt in made] == [("Boxed", "Docker")]

    run_app(daemon.socket, scenario)
