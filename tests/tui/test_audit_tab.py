"""The Audit tab of a company and of a run template, against the real daemon: who changed
what, and the field diff of the entry under the cursor (secret values only as "set" or
"changed"). A template's trail holds its own changes, its jobs' run now and cancel, and
the actions added to it."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.company import CompanyScreen
from multiflexi_tui.screens.template import TemplateScreen
from multiflexi_tui.widgets.list_table import ListTable
from tests.support.daemon import DaemonProcess
from tests.tui.support import run_app, screen_of, screen_text, wait_for, wait_text

SECRET = "tui-audit-secret-5150"


def _changes(daemon: DaemonProcess, rt_id: int) -> int:
    """A configuration change with a secret, an action, a job run now and cancelled, all
    of template ``rt_id``; and a change of another template of the same company."""
    daemon.call("runtemplate.update", id=rt_id,
                config={"TOKEN": SECRET, "SCRIPT": "sleep 30"})
    daemon.call("action.add", runtemplate_id=rt_id, module="WebHook", trigger="failure",
                config={"uri": "http://127.0.0.1:9/hook"})
    job = daemon.call("runtemplate.run", id=rt_id)["id"]
    daemon.call("job.cancel", id=job)
    daemon.wait_job(job)
    return int(job)


def test_a_templates_audit_tab_shows_its_changes_jobs_and_actions(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    rt_id = seeded["manual"]
    job = _changes(daemon, rt_id)
    daemon.call("runtemplate.update", id=seeded["report"], name="report 2")  # not this one

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        app.push_screen(TemplateScreen(daemon.call("runtemplate.get", id=rt_id), tab="audit"))
        screen = await screen_of(pilot, TemplateScreen)
        table = screen.query_one("#audit-table", ListTable)
        await wait_for(pilot, lambda: table.row_count == 4, "four entries")
        text = screen_text(app)
        assert f"job {job} cancel" in text
        assert f"job {job} of run template {rt_id}" in text  # run now
        assert "action " in text and " created" in text
        assert f"runtemplate {rt_id} changed" in text
        assert "report 2" not in text and f"runtemplate {seeded['report']}" not in text
        table.focus()
        await pilot.press("G")  # the oldest: the configuration change
        await wait_text(pilot, "config.TOKEN: set")
        text = screen_text(app)
        assert "config.SCRIPT: 'echo by hand' → 'sleep 30'" in text
        assert SECRET not in text
        assert "root" in text and "socket" in text  # who, from where

    run_app(daemon.socket, scenario, size=(140, 40))


def test_a_companys_audit_tab_shows_an_entry_and_its_diff(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    daemon.call("company.update", id=seeded["globex"], email="audit@globex.example")
    _changes(daemon, seeded["manual"])
    daemon.call("company.update", id=seeded["acme"], email="not-globex@acme.example")

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        app.push_screen(CompanyScreen(daemon.call("company.get", id=seeded["globex"])))
        screen = await screen_of(pilot, CompanyScreen)
        await pilot.press("5")
        table = screen.query_one("#audit-table", ListTable)
        await wait_for(pilot, lambda: table.row_count == 5, "globex's five entries")
        table.focus()
        await pilot.press("G")  # the oldest: the e-mail address
        await wait_text(pilot, "email: 'it@globex.example' → 'audit@globex.example'")
        text = screen_text(app)
        assert f"company {seeded['globex']} changed: email" in text
        assert "not-globex" not in text and SECRET not in text
        await pilot.press("k")  # the one before: the template's configuration
        await wait_text(pilot, "config.TOKEN: set")
        assert SECRET not in screen_text(app)

    run_app(daemon.socket, scenario, size=(140, 40))
