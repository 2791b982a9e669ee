"""The template's Actions tab and the job's action runs, against the real daemon and a
local HTTP server receiving the webhook."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Select

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.action_form import ActionFormScreen
from multiflexi_tui.screens.job import JobScreen
from multiflexi_tui.screens.template import TemplateScreen
from multiflexi_tui.widgets.actions_pane import ActionsPane
from tests.support.daemon import DaemonProcess
from tests.support.servers import HttpRecorder, Reply
from tests.tui.support import run_app, screen_of, screen_text, wait_for, wait_text


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
