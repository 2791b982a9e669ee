"""The template's Actions tab and the job's action runs, against the real daemon and a
local HTTP server receiving the webhook."""

from __future__ import annotations

import time
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Select

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.action_form import ActionFormScreen
from multiflexi_tui.screens.confirm import ConfirmScreen
from multiflexi_tui.screens.job import JobScreen
from multiflexi_tui.screens.template import TemplateScreen
from multiflexi_tui.widgets.actions_pane import ActionsPane
from multiflexi_tui.widgets.list_table import ListTable
from tests.support.daemon import DaemonProcess
from tests.support.servers import HttpRecorder, Received, Reply
from tests.tui.support import (
    drawn_style,
    notified,
    reddish,
    run_app,
    screen_of,
    screen_text,
    wait_for,
    wait_text,
)


def test_add_test_and_see_a_failed_delivery(daemon: DaemonProcess,
                                            seeded: dict[str, int]) -> None:
    rt_id = seeded["manual"]
    with HttpRecorder([Reply(200)]) as server:
        async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
            rt = daemon.call("runtemplate.get", id=rt_id)
            app.push_screen(TemplateScreen(rt, tab="actions"))
            screen = await screen_of(pilot, TemplateScreen)
            await wait_text(pilot, "no actions: a adds one")
            pane = screen.query_one(ActionsPane)
            pane.query_one("#action-table").focus()
            await pilot.press("a")
            form = await screen_of(pilot, ActionFormScreen)
            await wait_for(pilot, lambda: form.modules, "the modules")
            form.query_one("#module", Select).value = "WebHook"
            await wait_for(pilot, lambda: form.query("#key-uri-0"), "the uri input")
            form.query_one("#key-uri-0", Input).value = "ftp://nowhere"
            form.query_one("#key-secret-0", Input).value = "typed-secret-9"
            assert form.query_one("#key-secret-0", Input).password  # masked while typed
            await pilot.press("ctrl+s")
            await wait_text(pilot, "is not an http:// or https:// URL")
            assert form.query_one("#key-uri-0", Input).value == "ftp://nowhere"  # kept
            form.query_one("#key-uri-0", Input).value = server.url()
            await pilot.press("ctrl+s")
            await screen_of(pilot, TemplateScreen)
            await wait_text(pilot, "WebHook")
            text = screen_text(app)
            assert "secret=********" in text and "typed-secret-9" not in text
            pane.query_one("#action-table").focus()
            await pilot.press("T")
            await wait_text(pilot, f"ok: POST {server.url()}: HTTP 200")
            assert server.received[0].json["sample"] is True

        run_app(daemon.socket, scenario, size=(120, 36))
    # The server is gone now: a real failure's delivery fails, and the job shows it.
    daemon.call("action.add", runtemplate_id=rt_id, module="WebHook", trigger="any",
                config={"uri": "http://127.0.0.1:9/down"})
    job = daemon.wait_job(daemon.call("runtemplate.run", id=rt_id)["id"])

    async def job_info(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        def delivered() -> bool:
            runs = daemon.call("job.get", id=job["id"])["action_runs"]
            # the form's action is on failure: only the "any" one fires for a success
            return len(runs) == 1 and (runs[0]["state"] != "pending" or runs[0]["attempts"])

        await wait_for(pilot, delivered, "the delivery tried")
        app.push_screen(JobScreen(job["id"], tab="info"))
        await screen_of(pilot, JobScreen)
        await wait_text(pilot, "WebHook on any")
        assert "cannot connect" in screen_text(app)

    run_app(daemon.socket, job_info, size=(160, 40))


def _delivered(daemon: DaemonProcess, job_id: int, count: int) -> bool:
    runs = daemon.call("job.get", id=job_id)["action_runs"]
    return len(runs) == count and all(r["state"] in ("succeeded", "failed", "gave_up")
                                      for r in runs)


def test_a_failed_delivery_is_red_retried_and_an_action_removed(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    rt_id = seeded["manual"]
    healthy = False

    def reply(got: Received) -> Reply:
        if got.path == "/bad" and not healthy:
            return Reply(404, {"error": "no such hook"})
        return Reply(200)

    with HttpRecorder(reply) as server:
        ok = daemon.call("action.add", runtemplate_id=rt_id, module="WebHook", trigger="any",
                         config={"uri": server.url("/ok")})["id"]
        bad = daemon.call("action.add", runtemplate_id=rt_id, module="WebHook", trigger="any",
                          config={"uri": server.url("/bad")})["id"]
        company = daemon.call("action.add", company_id=seeded["globex"], module="Stop",
                              trigger="failure")["id"]
        job = daemon.wait_job(daemon.call("runtemplate.run", id=rt_id)["id"])
        deadline = time.monotonic() + 30
        while not _delivered(daemon, job["id"], 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        runs = {r["action_id"]: r for r in daemon.call("job.get", id=job["id"])["action_runs"]}
        assert (runs[ok]["state"], runs[bad]["state"]) == ("succeeded", "failed")

        async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
            nonlocal healthy
            rt = daemon.call("runtemplate.get", id=rt_id)
            app.push_screen(TemplateScreen(rt, tab="actions"))
            screen = await screen_of(pilot, TemplateScreen)
            await wait_text(pilot, "HTTP 404")
            # The failed delivery stands out: drawn red, and counted in red below.
            assert reddish(drawn_style(app, "HTTP 404: {\"error\""))
            assert not reddish(drawn_style(app, "/ok: HTTP 200"))
            assert reddish(drawn_style(app, "1 failed delivery"))
            pane = screen.query_one(ActionsPane)
            deliveries = pane.query_one("#delivery-table", ListTable)
            deliveries.focus()
            rows = [deliveries.get_row_at(i)[0] for i in range(deliveries.row_count)]
            assert rows == [runs[bad]["id"], runs[ok]["id"]]  # newest first
            await pilot.press("down", "R")  # a delivery that went fine: nothing to retry
            await wait_for(pilot, lambda: notified(app, "choose a failed delivery"),
                           "the warning")
            healthy = True
            await pilot.press("up", "R")
            await wait_for(pilot, lambda: notified(
                app, f"delivery #{runs[bad]['id']} is due again"), "the retry")
            await wait_for(pilot, lambda: "1 failed delivery" not in screen_text(app),
                           "the red count gone")
            await wait_for(pilot, lambda: any(p.path == "/bad" and p.json["action"]["attempt"]
                                              == 1 for p in server.received[2:]),
                           "the delivery again")
            # The tab follows the retried delivery: how it went shows without reopening.
            await wait_text(pilot, "/bad: HTTP 200")
            assert deliveries.get_row_at(deliveries.cursor_row)[0] == runs[bad]["id"]
            # Remove: a company's default is not removed here; the template's own is.
            actions = pane.query_one("#action-table", ListTable)
            actions.focus()
            await pilot.press("down", "down", "x")
            await wait_for(pilot, lambda: notified(app, "a company's default action"),
                           "the refusal")
            await pilot.press("up", "up", "x")
            confirm = await screen_of(pilot, ConfirmScreen)
            assert f"Remove action #{ok} (WebHook on any)?" in screen_text(app)
            await pilot.press("y")
            await screen_of(pilot, TemplateScreen)
            assert confirm is not app.screen
            await wait_for(pilot, lambda: notified(app, f"action {ok} removed"), "removed")
            await wait_for(pilot, lambda: actions.row_count == 2, "the table reloaded")
            assert [actions.get_row_at(i)[0] for i in range(2)] == [bad, company]
            assert "/ok" not in screen_text(app).split("Recent deliveries")[0]
            # Opened again once it is done, the retried delivery shows how it went.
            await wait_for(pilot, lambda: _delivered(daemon, job["id"], 2), "the retry done")
            await pilot.press("escape")
            app.push_screen(TemplateScreen(daemon.call("runtemplate.get", id=rt_id),
                                           tab="actions"))
            await screen_of(pilot, TemplateScreen)
            await wait_text(pilot, "/bad: HTTP 200")
            assert not reddish(drawn_style(app, "/bad: HTTP 200"))
            assert "failed deliver" not in screen_text(app)

        run_app(daemon.socket, scenario, size=(150, 40))
    assert [a["id"] for a in daemon.call("action.list", runtemplate_id=rt_id)["items"]] == [
        bad, company]
    assert daemon.call("action_run.list", runtemplate_id=rt_id)["items"][0]["state"] == \
        "succeeded"


def test_the_form_adds_an_action_on_a_missed_deadline(daemon: DaemonProcess,
                                                     seeded: dict[str, int]) -> None:
    rt_id = seeded["nightly"]  # done by 07:00

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        app.push_screen(TemplateScreen(daemon.call("runtemplate.get", id=rt_id), tab="actions"))
        screen = await screen_of(pilot, TemplateScreen)
        await wait_text(pilot, "no actions: a adds one")
        screen.query_one(ActionsPane).query_one("#action-table").focus()
        await pilot.press("a")
        form = await screen_of(pilot, ActionFormScreen)
        await wait_for(pilot, lambda: form.modules, "the modules")
        form.query_one("#trigger", Select).focus()
        await pilot.press("enter")  # the trigger's choices drop down
        await wait_text(pilot, "recovery")
        shown = screen_text(app)
        assert "missed" in shown and "late" in shown
        await pilot.press("escape")
        form.query_one("#trigger", Select).value = "missed"
        form.query_one("#module", Select).value = "WebHook"
        await wait_for(pilot, lambda: form.query("#key-uri-0"), "the uri input")
        form.query_one("#key-uri-0", Input).value = "http://127.0.0.1:9/missed"
        await pilot.press("ctrl+s")
        await screen_of(pilot, TemplateScreen)
        await wait_text(pilot, "missed (first)")

    run_app(daemon.socket, scenario, size=(120, 36))
    (action,) = daemon.call("action.list", runtemplate_id=rt_id)["items"]
    assert (action["trigger"], action["throttle"], action["module"]) == (
        "missed", "first", "WebHook")
