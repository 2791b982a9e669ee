"""Pilot tests of what the admin does: run now (with overrides, output live), cancel,
enable/disable, live updates of rows, artifacts."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.text import Text
from textual.pilot import Pilot

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.artifact import ArtifactScreen
from multiflexi_tui.screens.confirm import ConfirmScreen
from multiflexi_tui.screens.job import JobScreen
from multiflexi_tui.screens.main import MainScreen
from multiflexi_tui.screens.run_now import RunNowScreen, parse_overrides
from multiflexi_tui.widgets.output_log import OutputLog
from multiflexi_tui.widgets.resource_view import ResourceView
from multiflexid.core import Core
from tests.support.daemon import DaemonProcess
from tests.tui.support import run_app, screen_of, screen_text, wait_for, wait_text


def view(app: MultiFlexiApp, name: str) -> ResourceView:
    return app.screen.query_one(f"#{name}-view", ResourceView)


def row_of(v: ResourceView, key: int) -> list[str]:
    table = v.table
    return [Text.from_markup(str(c)).plain if not isinstance(c, Text) else c.plain
            for c in table.get_row(str(key))]


async def on_template(pilot: Pilot[Any], rt_id: int) -> ResourceView:
    app: Any = pilot.app
    await pilot.press("3")
    templates = await wait_for(pilot, lambda: view(app, "templates").table.row_count
                               and view(app, "templates"), "templates")
    templates.select_key(str(rt_id))
    await pilot.pause()
    assert templates.current()["id"] == rt_id  # type: ignore[index]
    return templates


def test_parse_overrides() -> None:
    assert parse_overrides("A=1 B='two words' C=") == {"A": "1", "B": "two words", "C": ""}
    for bad in ("A", "1A=2", "A='open"):
        try:
            parse_overrides(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_run_now_with_an_override_shows_the_output_live(
        daemon: DaemonProcess, seeded: dict[str, int], tui_core: Core) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await on_template(pilot, seeded["report"])
        await pilot.press("r")
        modal = await screen_of(pilot, RunNowScreen)
        await wait_text(pilot, "keys: MESSAGE")  # what may be overridden
        script = 'echo "say $MESSAGE"; sleep 3; echo to-stderr >&2; echo after'
        await pilot.press(*f"MESSAGE=hello-override SCRIPT='{script}'")
        await pilot.press("enter")
        screen = await screen_of(pilot, JobScreen)
        assert modal is not screen
        log = screen.query_one(OutputLog)
        # The first line arrives while the job still runs: followed live.
        await wait_for(pilot, lambda: "say hello-override" in log.text_written,
                       "the first line")
        assert screen.job["state"] in ("scheduled", "running")
        await wait_for(pilot, lambda: screen.job.get("state") == "succeeded", "the end")
        await wait_for(pilot, lambda: "after" in log.text_written, "the last line")
        assert log.text_written.count("say hello-override") == 1  # no duplicates
        # stderr is told apart by its style
        assert "red" in style_of(log, "to-stderr")
        assert "red" not in style_of(log, "after")
        job = daemon.call("job.get", id=screen.job_id)
        assert job["launched_by"] and job["schedule_type"] == "adhoc-tui"
        assert "exit 0" in screen_text(app)

    run_app(daemon.socket, scenario)


def style_of(log: OutputLog, needle: str) -> str:
    """The style the log shows ``needle`` in."""
    for strip in log.lines:
        for segment in strip:
            if needle in segment.text:
                return str(segment.style)
    raise AssertionError(f"{needle!r} not in the log")


def test_run_now_refuses_a_bad_override_in_the_dialog(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await on_template(pilot, seeded["report"])
        await pilot.press("r")
        await screen_of(pilot, RunNowScreen)
        await pilot.press(*"nonsense", "enter")
        await wait_text(pilot, "write KEY=VALUE")
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)

    run_app(daemon.socket, scenario)


def test_secret_values_are_masked_while_typed_in_the_run_dialog(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    """TOKEN is a password field of the app; MY_PASSWORD is undeclared but named like a
    secret: both show as bullets while typed, and the job gets them as secrets."""
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await on_template(pilot, seeded["report"])
        await pilot.press("r")
        await screen_of(pilot, RunNowScreen)
        await wait_text(pilot, "keys: MESSAGE")
        await pilot.press(*"TOKEN=hunter22 MY_PASSWORD=pw-12345 MESSAGE=visible")
        await pilot.pause()
        shown = screen_text(app)
        assert "TOKEN=•••••••• MY_PASSWORD=•••••••• MESSAGE=visible" in shown, shown
        assert "hunter22" not in shown and "pw-12345" not in shown
        await pilot.press("enter")
        screen = await screen_of(pilot, JobScreen)
        job = daemon.wait_job(screen.job_id)
        assert job["environment"]["TOKEN"] == "********"
        assert job["environment"]["MY_PASSWORD"] == "********"
        assert job["environment"]["MESSAGE"] == "visible"

    run_app(daemon.socket, scenario)


def test_stderr_and_system_lines_have_their_own_style() -> None:
    from multiflexi_tui.widgets.output_log import STREAM_STYLES

    assert STREAM_STYLES["stderr"] != STREAM_STYLES["stdout"]
    assert STREAM_STYLES["system"] not in (STREAM_STYLES["stdout"], STREAM_STYLES["stderr"])


def test_cancel_a_running_job(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    job = daemon.call("runtemplate.run", id=seeded["manual"],
                      env={"SCRIPT": "echo started; sleep 60"})
    daemon.wait_job(job["id"], states=("running",))

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        jobs = await wait_for(pilot, lambda: view(app, "jobs").table.row_count >= 6
                              and view(app, "jobs"), "the jobs")
        jobs.select_key(str(job["id"]))
        await pilot.press("c")
        await screen_of(pilot, ConfirmScreen)
        assert f"Cancel job #{job['id']}" in screen_text(app)
        await pilot.press("y")
        await wait_for(pilot, lambda: "cancelled" in row_of(jobs, job["id"])[1],
                       "the row to show cancelled")
        assert daemon.call("job.get", id=job["id"])["state"] == "cancelled"
        # the footer no longer offers to cancel it, and c does nothing more
        await wait_for(pilot, lambda: "Cancel job" not in screen_text(app).splitlines()[-1],
                       "the footer without cancel")
        await pilot.press("c")
        await pilot.pause(0.2)
        assert isinstance(app.screen, MainScreen)

    run_app(daemon.socket, scenario)


def test_cancel_from_the_job_screen_and_say_no(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    job = daemon.call("runtemplate.run", id=seeded["manual"],
                      env={"SCRIPT": "echo started; sleep 60"})
    daemon.wait_job(job["id"], states=("running",))

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        jobs = await wait_for(pilot, lambda: view(app, "jobs").table.row_count >= 6
                              and view(app, "jobs"), "the jobs")
        jobs.select_key(str(job["id"]))
        await pilot.press("l")  # l from a job row: its output
        screen = await screen_of(pilot, JobScreen)
        await wait_for(pilot, lambda: "started" in screen.query_one(OutputLog).text_written,
                       "its output")
        await pilot.press("c")
        await screen_of(pilot, ConfirmScreen)
        await pilot.press("n")
        assert app.screen is screen
        assert daemon.call("job.get", id=job["id"])["state"] == "running"
        await pilot.press("c")
        await screen_of(pilot, ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.job.get("state") == "cancelled", "cancelled")
        await wait_text(pilot, "cancelled")

    run_app(daemon.socket, scenario)


def test_enable_and_disable_a_template(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    rt_id = seeded["hourly"]

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        templates = await on_template(pilot, rt_id)
        on, nxt = ([c.key for c in templates.COLUMNS].index(k)
                   for k in ("active", "next_schedule"))
        assert row_of(templates, rt_id)[on] == "yes"
        await pilot.press("t")
        await wait_for(pilot, lambda: row_of(templates, rt_id)[on] == "no", "off")
        assert daemon.call("runtemplate.get", id=rt_id)["active"] is False
        assert row_of(templates, rt_id)[nxt] == "—"  # no next run while off
        await pilot.press("t")
        await wait_for(pilot, lambda: row_of(templates, rt_id)[on] == "yes", "on again")
        assert daemon.call("runtemplate.get", id=rt_id)["active"] is True

    run_app(daemon.socket, scenario)


def test_a_template_a_stop_action_switched_off_says_why_in_the_list(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    rt_id = seeded["hourly"]
    daemon.call("action.add", runtemplate_id=rt_id, module="Stop", trigger="any",
                config={"reason": "statement import broke"})

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        templates = await on_template(pilot, rt_id)
        on = [c.key for c in templates.COLUMNS].index("active")
        assert row_of(templates, rt_id)[on] == "yes"
        assert row_of(templates, seeded["manual"])[on] == "no: bank login refused"
        daemon.call("runtemplate.run", id=rt_id)  # the Stop action switches it off
        await wait_for(pilot, lambda: row_of(templates, rt_id)[on]
                       == "no: statement import broke", "the reason in the row")
        assert "no: statement import broke" in screen_text(app)

    run_app(daemon.socket, scenario, size=(120, 30))


def test_job_rows_follow_state_changes_pushed_by_the_daemon(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        jobs = await wait_for(pilot, lambda: view(app, "jobs").table.row_count == 5
                              and view(app, "jobs"), "the jobs")
        sent: list[str] = []
        app.link.add_listener(lambda method, params: sent.append(method))
        # someone else (the CLI, the scheduler) starts a job: it appears at the top...
        job = daemon.call("runtemplate.run", id=seeded["manual"],
                          env={"SCRIPT": "sleep 1; exit 3"})
        await wait_for(pilot, lambda: str(job["id"]) in [
            str(k.value) for k in jobs.table.rows], "the new row")
        assert jobs.table.get_row_index(str(job["id"])) == 0
        # ...and changes to failed with its exit code, no key pressed, no polling
        await wait_for(pilot, lambda: "failed" in row_of(jobs, job["id"])[1], "failed")
        assert row_of(jobs, job["id"])[5] == "3"
        assert set(sent) <= {"job.changed", "runtemplate.changed", "daemon.status"}
        # the template's "last" column followed too
        await pilot.press("3")
        templates = view(app, "templates")
        last = [c.key for c in templates.COLUMNS].index("last_job")
        await wait_for(pilot, lambda: f"#{job['id']}" in row_of(templates,
                                                                seeded["manual"])[last],
                       "the template's last job")

    run_app(daemon.socket, scenario)


def test_artifacts_are_listed_and_a_text_one_viewable(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        jobs = await wait_for(pilot, lambda: view(app, "jobs").table.row_count == 5
                              and view(app, "jobs"), "the jobs")
        jobs.select_key(str(seeded["job5"]))
        await pilot.press("enter")
        await screen_of(pilot, JobScreen)
        await wait_text(pilot, "collected notes.txt")  # the system line
        await pilot.press("4")
        await wait_text(pilot, "notes.txt")
        assert "text/plain" in screen_text(app)
        await pilot.press("enter")
        await screen_of(pilot, ArtifactScreen)
        await wait_text(pilot, "notes of the report")
        await wait_text(pilot, "line two")
        await pilot.press("escape")
        assert isinstance(app.screen, JobScreen)

    run_app(daemon.socket, scenario)


def test_a_job_run_for_real_has_its_artifact_and_exit_meaning(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await on_template(pilot, seeded["report"])
        await pilot.press("r")
        await screen_of(pilot, RunNowScreen)
        await pilot.press(*"SCRIPT='echo made > notes.txt; exit 3'", "enter")
        screen = await screen_of(pilot, JobScreen)
        await wait_for(pilot, lambda: screen.job.get("state") == "failed", "its end")
        await pilot.press("2")
        await wait_text(pilot, "3 (error: Invalid configuration)")
        await pilot.press("4")
        await wait_text(pilot, "notes.txt")
        await pilot.press("enter")
        await wait_text(pilot, "made")

    run_app(daemon.socket, scenario)


def test_output_pushed_while_the_screen_opens_waits_for_what_came_before(
        daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    """Opening a running job: a line pushed while the screen still reads the job (a slow
    link) waits for the stored lines before it. Applied at once it set where reading
    started, and the first line was never shown (seen over SSH in CI)."""
    script = "echo first-line; sleep 1.5; echo second-line; sleep 3"
    job = daemon.call("runtemplate.run", id=seeded["manual"], env={"SCRIPT": script})

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: app.link.connected, "the connection")
        # the job runs and has printed its first line
        await wait_for(pilot, lambda: daemon.call("job.output", id=job["id"])["chunks"],
                       "the first line stored")
        calls = 0
        call_with = app.link.call_with

        async def slow_link(method: str, params: dict[str, Any]) -> Any:
            nonlocal calls
            reply = await call_with(method, params)
            if method == "job.get":
                calls += 1
                if calls == 2:  # the look after subscribing: the second line comes meanwhile
                    await asyncio.sleep(2.5)
            return reply

        app.link.call_with = slow_link  # type: ignore[method-assign]
        await app.push_screen(JobScreen(job["id"]))
        screen = await screen_of(pilot, JobScreen)
        log = screen.query_one(OutputLog)
        await wait_for(pilot, lambda: "second-line" in log.text_written, "the second line",
                       timeout=30)
        assert calls >= 2
        assert log.text_written.index("first-line") < log.text_written.index("second-line")
        await wait_for(pilot, lambda: screen.job.get("state") == "succeeded", "the end",
                       timeout=30)
        assert log.text_written.count("first-line") == 1

    run_app(daemon.socket, scenario)
