"""Pilot tests of the TUI's forms against the real daemon: companies, credentials, the
template editor and the application import. Each has a save the daemon refuses: the
error is shown by the field it names and what was typed stays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Select, SelectionList, Static

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.company import CompanyScreen
from multiflexi_tui.screens.company_form import CompanyFormScreen
from multiflexi_tui.screens.credential_form import CredentialFormScreen
from multiflexi_tui.screens.import_app import ImportScreen
from multiflexi_tui.screens.main import MainScreen
from multiflexi_tui.screens.template import TemplateScreen
from multiflexi_tui.screens.template_edit import TemplateEditScreen
from multiflexi_tui.widgets.field_input import FieldInput, LabeledRow
from multiflexi_tui.widgets.resource_view import ResourceView
from multiflexid.core import Core
from multiflexid.services import companies, credentials
from tests.support.daemon import DaemonProcess
from tests.support.factory import shell_app
from tests.tui.support import notified, run_app, screen_of, screen_text, wait_for, wait_text


def view(app: MultiFlexiApp, name: str) -> ResourceView:
    return app.screen.query_one(f"#{name}-view", ResourceView)


async def loaded(pilot: Pilot[Any], name: str, count: int) -> ResourceView:
    app: Any = pilot.app
    return await wait_for(pilot, lambda: view(app, name).table.row_count == count
                          and view(app, name), f"{count} rows of {name}")


def field(screen: Any, key: str) -> FieldInput:
    return screen.query_one(f"#field-{key}", FieldInput)


def error_of(part: Any) -> str:
    """The refusal shown under a field or a row."""
    static = part.query_one(".error", Static)
    return str(static.render()) if part.has_class("-invalid") else ""


async def type_into(pilot: Pilot[Any], widget: Any, text: str) -> None:
    widget.focus()
    await pilot.pause()
    await pilot.press("ctrl+u", *text) if text else await pilot.press("ctrl+u")


async def type_field(pilot: Pilot[Any], screen: Any, key: str, text: str) -> None:
    await type_into(pilot, field(screen, key).query_one(Input), text)


async def choose(pilot: Pilot[Any], select: Select[Any], value: Any) -> None:
    """Pick ``value`` in a Select with the keyboard, as an admin does."""
    select.focus()
    await pilot.press("enter")
    await pilot.pause()
    values = [v for _label, v in select._options]
    current = select.value if select.value in values else values[0]
    steps = values.index(value) - values.index(current)
    await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps), "enter")
    await wait_for(pilot, lambda: select.value == value, f"{value!r} chosen")


def test_company_created_and_edited(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("1")
        companies = await loaded(pilot, "companies", 2)
        await pilot.press("n")
        form = await screen_of(pilot, CompanyFormScreen)
        assert "New company" in screen_text(app)
        await type_field(pilot, form, "name", "Initech a.s.")
        await type_field(pilot, form, "slug", "GLOBEX")  # taken (slugs ignore case)
        await type_field(pilot, form, "email", "it@initech.example")
        await pilot.press("ctrl+s")
        # refused by the daemon: said by the code, and everything typed is still there
        await wait_for(pilot, lambda: error_of(field(form, "slug")), "the refusal")
        assert "already exists" in error_of(field(form, "slug"))
        assert error_of(field(form, "name")) == ""
        assert app.screen is form
        assert [field(form, k).value for k in ("name", "slug", "email")] == [
            "Initech a.s.", "GLOBEX", "it@initech.example"]
        assert "slug: a company with slug 'globex' already exists" in screen_text(app)
        await type_field(pilot, form, "slug", "initech")
        await pilot.press("ctrl+s")
        await screen_of(pilot, MainScreen)
        made = daemon.call("company.get", slug="initech")
        assert (made["name"], made["email"], made["enabled"]) == (
            "Initech a.s.", "it@initech.example", True)
        await wait_for(pilot, lambda: (companies.current() or {}).get("id") == made["id"],
                       "the new company under the cursor")
        assert notified(app, "company initech created")

        # edit it: a bad e-mail is caught before sending; then disabled, e-mail cleared
        await pilot.press("e")
        form = await screen_of(pilot, CompanyFormScreen)
        assert field(form, "name").value == "Initech a.s."
        await type_field(pilot, form, "email", "not-mail")
        await pilot.press("ctrl+s")
        await wait_text(pilot, "not an e-mail address")
        assert app.screen is form
        await type_field(pilot, form, "email", "")
        await choose(pilot, field(form, "enabled").query_one(Select), "false")
        await pilot.press("ctrl+s")
        await screen_of(pilot, MainScreen)
        changed = daemon.call("company.get", id=made["id"])
        assert (changed["name"], changed["email"], changed["enabled"]) == (
            "Initech a.s.", "", False)
        await wait_for(pilot, lambda: companies.records[str(made["id"])]["enabled"] is False,
                       "the row updated")

    run_app(daemon.socket, scenario)


async def on_company_credentials(pilot: Pilot[Any]) -> CompanyScreen:
    await pilot.press("1")
    await loaded(pilot, "companies", 2)
    await pilot.press("enter")  # acme
    company: CompanyScreen = await screen_of(pilot, CompanyScreen)
    await pilot.press("4")
    await wait_text(pilot, "probe secret")
    return company


def test_credential_created_and_edited(daemon: DaemonProcess, seeded: dict[str, int],
                                       tui_core: Core) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await on_company_credentials(pilot)
        await pilot.press("n")
        form = await screen_of(pilot, CredentialFormScreen)
        await choose(pilot, field(form, "type").query_one(Select), "Probe")
        # the inputs of the type's fields: secret masked, typed, defaults filled in
        await wait_for(pilot, lambda: form.query("#field-PASSWORD"), "the Probe fields")
        password = field(form, "PASSWORD").query_one(Input)
        assert password.password and field(form, "PROBE_SLEEP").value == "0"
        assert field(form, "APP_DEBUG").value == "false"
        await type_field(pilot, form, "name", "probe secret")  # taken in acme
        await type_into(pilot, password, "pw-TYPED-1")
        await type_field(pilot, form, "PROBE_SLEEP", "1_5")
        await pilot.press("ctrl+s")
        await wait_text(pilot, "1 field(s) need attention: PROBE_SLEEP")  # checked here
        assert "not a number" in error_of(field(form, "PROBE_SLEEP"))
        await type_field(pilot, form, "PROBE_SLEEP", "2.5")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: error_of(field(form, "name")), "the daemon's refusal")
        assert "already has a credential named 'probe secret'" in error_of(field(form, "name"))
        assert (field(form, "name").value, password.value,
                field(form, "PROBE_SLEEP").value) == ("probe secret", "pw-TYPED-1", "2.5")
        assert "pw-TYPED-1" not in screen_text(app)
        await type_field(pilot, form, "name", "second probe")
        await pilot.press("ctrl+s")
        company = await screen_of(pilot, CompanyScreen)
        await wait_text(pilot, "second probe")
        made = next(c for c in daemon.call("credential.list", company_id=seeded["acme"])[
            "items"] if c["name"] == "second probe")
        assert made["values"]["PROBE_SLEEP"] == "2.5"

        # edit: the secret is kept unless typed again
        table = company.query_one("#credential-table")
        table.move_cursor(row=table.get_row_index(str(made["id"])))
        await pilot.press("e")
        form = await screen_of(pilot, CredentialFormScreen)
        await wait_for(pilot, lambda: form.query("#field-PASSWORD"), "its fields")
        assert field(form, "PASSWORD").value == "" and field(form, "PASSWORD").kept
        assert "(stored; type a new value to replace it)" in screen_text(app)
        await type_field(pilot, form, "PROBE_SLEEP", "7")
        await pilot.press("ctrl+s")
        await screen_of(pilot, CompanyScreen)
        await wait_text(pilot, "PROBE_SLEEP=7")

    run_app(daemon.socket, scenario)
    with tui_core.db.session() as s:
        cred = next(c for c in credentials.list_credentials(s, companies.get_company(s, "acme"))
                    if c.name == "second probe")
        values = credentials.credential_values(cred, tui_core.box, reveal=True)
        assert (values["PASSWORD"], values["PROBE_SLEEP"]) == ("pw-TYPED-1", "7")


async def edit_template(pilot: Pilot[Any], rt_id: int) -> TemplateEditScreen:
    app: Any = pilot.app
    await pilot.press("3")
    templates = await loaded(pilot, "templates", 4)
    templates.select_key(str(rt_id))
    await pilot.pause()
    await pilot.press("e")
    editor: TemplateEditScreen = await screen_of(pilot, TemplateEditScreen)
    await wait_for(pilot, lambda: editor.loaded, "the template in the editor")
    assert app.screen is editor
    return editor


def test_template_editor_changes_schedule_config_and_credentials(
        daemon: DaemonProcess, seeded: dict[str, int], tui_core: Core,
        monkeypatch: Any) -> None:
    from datetime import UTC, datetime

    from multiflexi_tui import format as fmt

    monkeypatch.setattr(fmt, "CLOCK", lambda: datetime(2024, 5, 1, 6, 2, tzinfo=UTC))
    rt_id = seeded["hourly"]  # the shell app, SCRIPT stored on the template

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        editor = await edit_template(pilot, rt_id)
        assert "Edit run template #2 hourly · Shell · acme" in screen_text(app)
        name = editor.query_one("#name", Input)
        assert name.value == "hourly" and app.focused is name
        assert editor.query_one("#timezone", Input).value == "UTC"
        executor = editor.query_one("#executor", Select)
        assert [v for _l, v in executor._options] == ["Native"]  # no container image
        await type_into(pilot, name, "hourly edited")
        await choose(pilot, editor.query_one("#interv", Select), "c")
        await type_into(pilot, editor.query_one("#cron", Input), "30 2 * * *")
        await type_into(pilot, editor.query_one("#timezone", Input), "Mars/Olympus")
        await type_into(pilot, editor.query_one("#timeout", Input), "90")
        await pilot.press("ctrl+n")  # configuration
        await wait_text(pilot, "shell snippet")
        assert field(editor, "SCRIPT").value == "echo tick"  # the template's own value
        token = field(editor, "TOKEN")
        assert token.query_one(Input).password and not token.kept  # the app's default
        await type_field(pilot, editor, "SCRIPT", "echo edited-$TOKEN")
        await type_field(pilot, editor, "TOKEN", "tok-NEW-999")
        await pilot.press("ctrl+n")  # credentials: acme's, none assigned yet
        await wait_text(pilot, "probe secret (Probe)")
        choice = editor.query_one(SelectionList)
        assert choice.selected == []
        choice.focus()
        await pilot.press("space")
        await pilot.press("ctrl+s")
        # the daemon refuses the zone: the editor goes to it, says why, keeps everything
        row = editor.query_one("#row-timezone", LabeledRow)
        await wait_for(pilot, lambda: error_of(row), "the refusal by the time zone")
        assert "Mars/Olympus" in error_of(row)
        assert editor.query_one("#edit-tabs").active == "schedule"
        assert app.focused is editor.query_one("#timezone", Input)
        assert app.screen is editor
        assert (name.value, field(editor, "SCRIPT").value, field(editor, "TOKEN").value,
                choice.selected) == ("hourly edited", "echo edited-$TOKEN", "tok-NEW-999",
                                     [seeded["credential"]])
        assert "tok-NEW-999" not in screen_text(app)
        await type_into(pilot, editor.query_one("#timezone", Input), "Europe/Prague")
        await wait_text(pilot, "Thu 2024-05-02 02:30 +0200")  # the next due times, in view
        await pilot.press("ctrl+s")
        await screen_of(pilot, MainScreen)
        assert notified(app, f"run template #{rt_id} hourly edited saved")
        rt = daemon.call("runtemplate.get", id=rt_id)
        assert (rt["name"], rt["interv"], rt["cron"], rt["timezone"], rt["timeout"],
                rt["credentials"]) == ("hourly edited", "c", "30 2 * * *", "Europe/Prague",
                                       90, [seeded["credential"]])
        assert sorted(rt["config_keys"]) == ["SCRIPT", "TOKEN"]

        # again: the stored secret is kept unless typed; a value back at the app's
        # default is no longer stored; the credential is unassigned
        editor = await edit_template(pilot, rt_id)
        await pilot.press("ctrl+n")
        token = field(editor, "TOKEN")
        assert token.kept and token.value == ""
        await type_field(pilot, editor, "SCRIPT", "echo hello")  # the app's default
        await pilot.press("ctrl+n")
        choice = editor.query_one(SelectionList)
        assert choice.selected == [seeded["credential"]]
        choice.focus()
        await pilot.press("space", "ctrl+s")
        await screen_of(pilot, MainScreen)
        rt = daemon.call("runtemplate.get", id=rt_id)
        assert (rt["config_keys"], rt["credentials"]) == (["TOKEN"], [])

        # nothing changed: nothing is sent
        await edit_template(pilot, rt_id)
        await pilot.press("ctrl+s")
        await screen_of(pilot, MainScreen)
        assert notified(app, "nothing changed")

    run_app(daemon.socket, scenario)
    with tui_core.db.session() as s:
        from multiflexid.services import runtemplates

        rt = runtemplates.get_runtemplate(s, rt_id)
        config, secret = runtemplates.template_config(rt, tui_core.box)
        assert config == {"TOKEN": "tok-NEW-999"} and secret == {"TOKEN"}


def test_template_edit_and_its_detail_screen(daemon: DaemonProcess,
                                             seeded: dict[str, int]) -> None:
    """`e` on the template's own screen; its environment shows the new value after."""
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        templates = await loaded(pilot, "templates", 4)
        templates.select_key(str(seeded["nightly"]))
        await pilot.press("enter")
        await screen_of(pilot, TemplateScreen)
        await pilot.press("e")
        editor = await screen_of(pilot, TemplateEditScreen)
        await wait_for(pilot, lambda: editor.loaded, "the editor")
        await pilot.press("ctrl+n")
        await type_field(pilot, editor, "MESSAGE", "from the editor")
        await pilot.press("ctrl+s")
        await screen_of(pilot, TemplateScreen)
        await pilot.press("2")
        await wait_text(pilot, "from the editor")

    run_app(daemon.socket, scenario)


def test_import_an_application_file(daemon: DaemonProcess, seeded: dict[str, int],
                                    tmp_path: Path) -> None:
    doc = shell_app("Imported", "echo imported")
    broken = tmp_path / "broken.multiflexi.app.json"
    broken.write_text(json.dumps({**doc, "executable": 5}))
    good = tmp_path / "good.multiflexi.app.json"
    good.write_text(json.dumps(doc))

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("2")
        apps = await loaded(pilot, "apps", 3)
        await pilot.press("i")
        form = await screen_of(pilot, ImportScreen)
        await type_field(pilot, form, "file", str(tmp_path / "missing.json"))
        await pilot.press("enter")
        await wait_for(pilot, lambda: error_of(field(form, "file")), "cannot read")
        assert "cannot read" in error_of(field(form, "file"))
        await type_field(pilot, form, "file", str(broken))
        await pilot.press("enter")
        await wait_text(pilot, "problem(s) in the file; nothing was imported")
        problems = str(form.query_one("#problems", Static).render())
        assert problems.startswith("$.executable: "), problems
        assert field(form, "file").value == str(broken)  # kept
        await type_field(pilot, form, "file", str(good))
        await pilot.press("enter")
        await screen_of(pilot, MainScreen)
        await wait_for(pilot, lambda: apps.table.row_count == 4, "the new application")
        new = apps.current()
        assert new is not None and new["name"] == "Imported"
        assert notified(app, "application Imported imported")

    run_app(daemon.socket, scenario)


def test_edit_keys_are_hidden_from_who_may_not(daemon: DaemonProcess,
                                               seeded: dict[str, int]) -> None:
    """As the views do for run and cancel (daemon.status's access; the daemon refuses the
    rest anyway): new/edit/clone/import/mark keys are offered to whom they are allowed."""
    import dataclasses

    def as_roles(app: MultiFlexiApp, access: dict[str, Any]) -> None:
        link = app.link
        link.state = dataclasses.replace(link.state, status={**link.state.status,
                                                             "access": access})
        app.screen.refresh_bindings()

    def keys(app: MultiFlexiApp) -> set[str]:
        return {b.binding.key for b in app.screen.active_bindings.values() if b.enabled}

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        acme, globex = str(seeded["acme"]), str(seeded["globex"])
        await pilot.press("1")
        companies = await loaded(pilot, "companies", 2)
        assert {"n", "e"} <= keys(app)  # root: an admin of everything
        as_roles(app, {"everywhere": "viewer", "companies": {acme: "admin"}})
        await pilot.pause()
        assert "n" not in keys(app)  # a new company needs admin on every company
        for rec, may in ((acme, True), (globex, False)):
            companies.select_key(rec)
            await pilot.pause()
            assert ("e" in keys(app)) is may, rec
        await pilot.press("n")  # a hidden key does nothing
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        await pilot.press("2")
        await loaded(pilot, "apps", 3)
        assert "i" not in keys(app)
        await pilot.press("3")
        templates = await loaded(pilot, "templates", 4)
        for rec in templates.records.values():
            templates.select_key(templates.key_of(rec))
            await pilot.pause()
            mine = str(rec["company_id"]) == acme
            assert ("e" in keys(app), "c" in keys(app)) == (mine, mine), rec["name"]
        assert "space" in keys(app)  # an operator (or more) somewhere may mark rows
        as_roles(app, {"everywhere": "viewer", "companies": {}})
        await pilot.pause()
        assert not {"e", "c", "space", "b"} & keys(app)
        await pilot.press("1")
        await loaded(pilot, "companies", 2)
        await pilot.press("enter")
        await screen_of(pilot, CompanyScreen)
        await wait_text(pilot, "Created")
        assert "e" not in keys(app)
        await pilot.press("4")
        await wait_text(pilot, "shown to the company's admins")
        assert not {"n", "e", "c"} & keys(app)

    run_app(daemon.socket, scenario)
