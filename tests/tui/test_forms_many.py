"""Pilot tests of the forms for many companies against the real daemon: clone a template
or a credential, bulk changes of marked templates (with the daemon's dry-run diff), a
company's environment, tags and note in the template editor. Each has a save the daemon
refuses: the error is shown by the field it names and what was typed stays."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Select, Static

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.bulk import BulkScreen
from multiflexi_tui.screens.clone import CloneScreen
from multiflexi_tui.screens.company import CompanyScreen
from multiflexi_tui.screens.confirm import ConfirmScreen
from multiflexi_tui.screens.env_form import EnvVarScreen
from multiflexi_tui.screens.main import MainScreen
from multiflexi_tui.widgets.company_env import CompanyEnvPane
from multiflexi_tui.widgets.templates_view import TemplatesView
from tests.support.daemon import DaemonProcess
from tests.tui.support import notified, run_app, screen_of, screen_text, wait_for, wait_text
from tests.tui.test_forms import (
    choose,
    edit_template,
    error_of,
    field,
    loaded,
    on_company_credentials,
    type_field,
    type_into,
)


def test_clone_a_template_to_another_company(daemon: DaemonProcess,
                                             seeded: dict[str, int]) -> None:
    hourly = seeded["hourly"]
    daemon.call("runtemplate.update", id=hourly, credentials=[seeded["credential"]])

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        templates = await loaded(pilot, "templates", 4)
        templates.select_key(str(hourly))
        await pilot.press("c")
        form = await screen_of(pilot, CloneScreen)
        company = field(form, "company").query_one(Select)
        # the companies this user is an admin of; its own chosen
        await wait_for(pilot, lambda: company.value == "acme", "the companies")
        assert [v for _label, v in company._options] == [Select.NULL, "acme", "globex"]
        await choose(pilot, company, "globex")
        await type_field(pilot, form, "name", "hourly for globex")
        await pilot.press("ctrl+s")
        # globex has no Probe credential to re-point to: refused, said by the company
        await wait_for(pilot, lambda: error_of(field(form, "company")), "the refusal")
        assert "Probe" in error_of(field(form, "company"))
        assert (company.value, field(form, "name").value) == ("globex", "hourly for globex")
        assert app.screen is form
        await choose(pilot, company, "acme")
        await type_field(pilot, form, "name", "")  # the daemon's name: "hourly (copy)"
        await pilot.press("ctrl+s")
        await screen_of(pilot, MainScreen)
        copy = await wait_for(pilot, lambda: [r for r in templates.records.values()
                                              if r["name"] == "hourly (copy)"], "the copy")
        rt = daemon.call("runtemplate.get", id=copy[0]["id"])
        assert (rt["company"], rt["active"], rt["credentials"], rt["config_keys"]) == (
            "acme", False, [seeded["credential"]], ["SCRIPT"])  # disabled, to review
        await wait_for(pilot, lambda: (templates.current() or {}).get("id") == rt["id"],
                       "the copy under the cursor")
        assert notified(app, "disabled: review it, then enable it (t)")

    run_app(daemon.socket, scenario)


def test_clone_a_credential(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await on_company_credentials(pilot)
        await pilot.press("c")
        form = await screen_of(pilot, CloneScreen)
        await type_field(pilot, form, "name", "probe secret")  # taken in acme
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: error_of(field(form, "name")), "the refusal")
        assert "probe secret" in error_of(field(form, "name"))
        assert field(form, "name").value == "probe secret"
        await choose(pilot, field(form, "company").query_one(Select), "globex")
        await pilot.press("ctrl+s")
        await screen_of(pilot, CompanyScreen)
        assert notified(app, "probe secret created for globex")
        copies = daemon.call("credential.list", company_id=seeded["globex"])["items"]
        assert [(c["name"], c["type"], c["values"]["PASSWORD"]) for c in copies] == [
            ("probe secret", "Probe", "********")]

    run_app(daemon.socket, scenario)


def test_bulk_change_of_marked_templates(daemon: DaemonProcess, seeded: dict[str, int],
                                         tui_core: Any) -> None:
    wiz = daemon.call("runtemplate.create", app_id=seeded["wizardry"],
                      company_id=seeded["acme"], name="wiz", interv="n",
                      config={"API_URL": "https://api.example"},
                      credentials=[seeded["credential"]])

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        templates: TemplatesView = await loaded(pilot, "templates", 5)
        assert "b" not in {b.binding.key for b in app.screen.active_bindings.values()
                           if b.enabled}  # nothing marked yet
        templates.select_key(str(seeded["nightly"]))
        await pilot.press("space", "space")  # nightly, hourly
        await wait_text(pilot, "2 marked (b: bulk change)")
        assert [row[0] for row in (templates.table.get_row(str(k)) for k in (
            seeded["nightly"], seeded["hourly"], seeded["report"]))] == ["✓", "✓", ""]
        templates.select_key(str(wiz["id"]))
        await pilot.press("space")
        await pilot.press("b")
        form = await screen_of(pilot, BulkScreen)
        assert "Change 3 marked run template(s): nightly, hourly, wiz" in screen_text(app)
        await choose(pilot, field(form, "op").query_one(Select), "set-config")
        await type_field(pilot, form, "key", "COUNT")
        await type_field(pilot, form, "value", "many")  # wiz's COUNT is an integer
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: error_of(field(form, "value")), "the refusal")
        assert "is not an integer" in error_of(field(form, "value"))
        assert f"run template {wiz['id']} 'wiz'" in screen_text(app)
        assert (field(form, "key").value, field(form, "value").value) == ("COUNT", "many")
        await type_field(pilot, form, "key", "SCRIPT")
        await type_field(pilot, form, "value", "echo bulk")
        await pilot.press("ctrl+s")  # the dry run: its diff, nothing changed yet
        await wait_text(pilot, "3 run template(s) would change")
        diff = str(form.query_one("#diff", Static).render())
        assert "config.SCRIPT: echo tick → echo bulk" in diff
        assert "Apply (^s)" in screen_text(app)
        assert daemon.call("runtemplate.get", id=seeded["hourly"])["config_keys"] == [
            "SCRIPT"]
        env = {e["key"]: e["value"] for e in daemon.call(
            "runtemplate.env", id=seeded["hourly"])["environment"]}
        assert env["SCRIPT"] == "echo tick"
        await pilot.press("ctrl+s")  # apply
        await screen_of(pilot, MainScreen)
        assert notified(app, "set-config: 3 run template(s) changed")
        for rt in (seeded["nightly"], seeded["hourly"], wiz["id"]):
            env = {e["key"]: e["value"] for e in daemon.call(
                "runtemplate.env", id=rt)["environment"]}
            assert env["SCRIPT"] == "echo bulk", rt
        await wait_for(pilot, lambda: not templates.marked, "the marks cleared")

        # enable two enabled ones: nothing to apply; disable them: after a new dry run
        templates.select_key(str(seeded["nightly"]))
        await pilot.press("space", "space", "b")  # nightly, hourly
        form = await screen_of(pilot, BulkScreen)
        await choose(pilot, field(form, "op").query_one(Select), "enable")
        await pilot.press("ctrl+s")
        await wait_text(pilot, "Nothing to apply.")
        assert "Nothing would change." in screen_text(app)
        assert form.dry_run is None and "Preview (^s)" in screen_text(app)
        await choose(pilot, field(form, "op").query_one(Select), "disable")
        await pilot.press("ctrl+s")
        await wait_text(pilot, "2 run template(s) would change")
        await choose(pilot, field(form, "op").query_one(Select), "run")
        assert form.dry_run is None and "Preview (^s)" in screen_text(app)  # forgotten
        await choose(pilot, field(form, "op").query_one(Select), "disable")
        await pilot.press("ctrl+s")
        await wait_text(pilot, "active: true → false")
        await pilot.press("ctrl+s")
        await screen_of(pilot, MainScreen)
        await wait_for(pilot, lambda: not templates.records[str(seeded["hourly"])]["active"],
                       "the rows updated")
        assert daemon.call("runtemplate.get", id=seeded["nightly"])["active"] is False

    run_app(daemon.socket, scenario)


def test_bulk_run_starts_a_job_for_each(daemon: DaemonProcess,
                                        seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        templates = await loaded(pilot, "templates", 4)
        templates.select_key(str(seeded["report"]))
        await pilot.press("space", "space", "b")  # report, manual
        form = await screen_of(pilot, BulkScreen)  # run is the first operation
        await pilot.press("ctrl+s")
        await wait_text(pilot, "2 run template(s) would change")
        assert str(form.query_one("#diff", Static).render()).count("job: — → queued") == 2
        assert daemon.call("job.list", limit=1)["items"][0]["id"] == seeded["job5"]
        await pilot.press("ctrl+s")
        await screen_of(pilot, MainScreen)
        assert notified(app, "2 job(s) started")
        jobs = daemon.call("job.list", limit=2)["items"]
        assert sorted(j["runtemplate_id"] for j in jobs) == sorted(
            [seeded["report"], seeded["manual"]])
        assert {j["schedule_type"] for j in jobs} == {"adhoc-tui"}

    run_app(daemon.socket, scenario)


def test_company_environment(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        company = await on_company_credentials(pilot)
        await pilot.press("5")
        await wait_text(pilot, "no variables: n sets one")
        await pilot.press("n")
        form = await screen_of(pilot, EnvVarScreen)
        await type_field(pilot, form, "key", "MULTIFLEXI_OWN")  # the daemon's own
        await type_field(pilot, form, "value", "x")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: error_of(field(form, "key")), "the refusal")
        assert "MULTIFLEXI_" in error_of(field(form, "key"))
        assert (field(form, "key").value, field(form, "value").value) == (
            "MULTIFLEXI_OWN", "x")
        await type_field(pilot, form, "key", "ERP_PASSPHRASE")
        await type_field(pilot, form, "value", "pw-ENV-1")
        form.query_one("#secret", Checkbox).focus()
        await pilot.press("space")  # secret: masked while typed, stored encrypted
        assert field(form, "value").query_one(Input).password
        assert "pw-ENV-1" not in screen_text(app)
        await pilot.press("ctrl+s")
        await screen_of(pilot, CompanyScreen)
        await wait_text(pilot, "ERP_PASSPHRASE")
        await pilot.press("n")
        form = await screen_of(pilot, EnvVarScreen)
        await type_field(pilot, form, "key", "ERP_URL")
        await type_field(pilot, form, "value", "https://erp.acme.example")
        await pilot.press("ctrl+s")
        await screen_of(pilot, CompanyScreen)
        await wait_text(pilot, "https://erp.acme.example")
        listed = daemon.call("company.env.list", company="acme")
        assert listed == [
            {"key": "ERP_PASSPHRASE", "value": "********", "secret": True},
            {"key": "ERP_URL", "value": "https://erp.acme.example", "secret": False}]
        # every job of acme gets them: the template's environment says where from
        env = {e["key"]: e for e in daemon.call("runtemplate.env",
                                                id=seeded["hourly"])["environment"]}
        assert env["ERP_URL"]["value"] == "https://erp.acme.example"
        # edit the secret one: its name stays, its value must be typed again to change
        pane = company.query_one(CompanyEnvPane)
        table = pane.query_one("#env-table")
        table.move_cursor(row=table.get_row_index("ERP_PASSPHRASE"))
        await pilot.press("e")
        form = await screen_of(pilot, EnvVarScreen)
        assert field(form, "key").query_one(Input).disabled and field(form, "value").kept
        await pilot.press("escape")
        await screen_of(pilot, CompanyScreen)
        table.move_cursor(row=table.get_row_index("ERP_URL"))
        await pilot.press("x")
        await screen_of(pilot, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: [e["key"] for e in daemon.call(
            "company.env.list", company="acme")] == ["ERP_PASSPHRASE"], "ERP_URL unset")
        await wait_for(pilot, lambda: "https://erp" not in screen_text(app), "the row gone")

    run_app(daemon.socket, scenario)


def test_tags_and_note_in_the_template_editor(daemon: DaemonProcess,
                                              seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        editor = await edit_template(pilot, seeded["nightly"])
        for _ in range(3):
            await pilot.press("ctrl+n")
        await type_into(pilot, editor.query_one("#rt-tags Input"), "payroll, bad tag!")
        await type_into(pilot, editor.query_one("#rt-note Input"), "ask Jana before changing it")
        await pilot.press("ctrl+s")
        tags = editor.query_one("#rt-tags")
        await wait_for(pilot, lambda: error_of(tags), "the refusal")
        assert "bad tag!" in error_of(tags)
        assert tags.value == "payroll, bad tag!"  # type: ignore[attr-defined]
        await type_into(pilot, editor.query_one("#rt-tags Input"), "payroll, Nightly")
        await pilot.press("ctrl+s")
        await screen_of(pilot, MainScreen)
        rt = daemon.call("runtemplate.get", id=seeded["nightly"])
        assert (rt["tags"], rt["note"]) == (["nightly", "payroll"], "ask Jana before changing it")
        await pilot.press("slash", *"payroll", "enter")  # the filter finds tags
        templates = await loaded(pilot, "templates", 1)
        assert templates.current()["id"] == seeded["nightly"]  # type: ignore[index]

    run_app(daemon.socket, scenario)
