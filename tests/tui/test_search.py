"""Pilot tests of finding jobs: the jobs view's `/` search runs in the daemon (text in the
output, states, company, app, template, paged from the daemon), the job screen opens at
the end of a long output and pages back, the status bar follows the pushed status."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.help import HelpScreen
from multiflexi_tui.screens.job import PAGE_BYTES, JobScreen
from multiflexi_tui.widgets.output_log import OutputLog
from multiflexi_tui.widgets.resource_view import ResourceView
from multiflexid.core import Core
from multiflexid.services import lifecycle
from multiflexid.store.types import utcnow
from tests.support.daemon import DaemonProcess
from tests.tui.support import bulk_jobs, run_app, screen_of, screen_text, wait_for, wait_text


def jobs_view(app: MultiFlexiApp) -> ResourceView:
    return app.screen.query_one("#jobs-view", ResourceView)


def ids(view: ResourceView) -> list[int]:
    return [int(str(k.value)) for k in view.table.rows]


async def search(pilot: Pilot[Any], typed: str) -> None:
    await pilot.press("escape", "slash", *typed, "enter")


def test_slash_searches_the_output_in_the_daemon(daemon: DaemonProcess,
                                                 seeded: dict[str, int],
                                                 tui_core: Core) -> None:
    bulk_jobs(tui_core, seeded["hourly"], 245)  # 250 jobs: the five with output are old

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        jobs = jobs_view(app)
        await wait_for(pilot, lambda: len(jobs.records) == 100, "the first page")
        assert seeded["job1"] not in ids(jobs)
        # words are looked for in the jobs' output, by the daemon: found beyond the loaded
        # page, and in no column the list shows
        await search(pilot, "42 ROWS")
        await wait_for(pilot, lambda: ids(jobs) == [seeded["job1"]], "the job that printed it")
        assert "match: 42 rows" in screen_text(app)
        await search(pilot, "bad config")
        await wait_for(pilot, lambda: ids(jobs) == [seeded["job3"]], "stderr is searched too")
        await search(pilot, "report state:succeeded")
        await wait_for(pilot, lambda: ids(jobs) == [seeded["job5"]], "text and state")
        await search(pilot, "app:reporter company:acme")
        await wait_for(pilot, lambda: ids(jobs) == [seeded["job1"]], "app and company")
        await search(pilot, f"template:{seeded['report']} state:failed,succeeded")
        await wait_for(pilot, lambda: ids(jobs) == [seeded["job5"], seeded["job3"]],
                       "a template, two states")
        await search(pilot, "since:2030-01-01")
        await wait_text(pilot, "no jobs")
        await search(pilot, "ok")
        await wait_text(pilot, "text needs 3+ characters")
        # a search pages from the daemon like the whole list
        await search(pilot, "state:succeeded company:acme")
        await wait_for(pilot, lambda: len(jobs.records) == 100, "a page of the search")
        await pilot.press("G")
        await wait_for(pilot, lambda: len(jobs.records) == 200, "its second page")
        await pilot.press("G")
        await wait_for(pilot, lambda: len(jobs.records) == 248, "its last page (245 + 3)")
        assert len(set(ids(jobs))) == 248 and seeded["job3"] not in ids(jobs)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not jobs.filter_text and ids(jobs)[:1] == [250],
                       "every job again, newest first")

    run_app(daemon.socket, scenario)


def test_the_help_screen_says_the_search_syntax(daemon: DaemonProcess) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")
        help_screen = await screen_of(pilot, HelpScreen)
        text = str(help_screen.query_one("VerticalScroll Static").render())
        for needle in ("Jobs search (/, run by the daemon)", "state:NAME", "company:C",
                       "app:A", "template:N", "since:DATE", "until:DATE",
                       "jobs whose output holds them (one line, any case, 3+ characters)"):
            assert needle in text, needle

    run_app(daemon.socket, scenario)


def _long_output(core: Core, job_id: int, chunks: int) -> list[str]:
    """``chunks`` more chunks of five numbered lines for a job; every line, in order."""
    lines = [f"line {n:05d} of a long output {'.' * 40}" for n in range(chunks * 5)]
    rows = [{"job_id": job_id, "seq": 100 + i, "stream": "stdout", "at": utcnow(),
             "data": ("\n".join(lines[5 * i:5 * i + 5]) + "\n").encode()}
            for i in range(chunks)]
    with core.db.session() as s:
        lifecycle.write_output(s, rows, {job_id: (sum(len(r["data"]) for r in rows), 0)})
    return lines


def test_the_job_screen_opens_at_the_end_and_pages_back(daemon: DaemonProcess,
                                                        seeded: dict[str, int],
                                                        tui_core: Core) -> None:
    job = seeded["job2"]
    lines = _long_output(tui_core, job, 1500)  # ~500 kB: eight pages from the end
    assert len("\n".join(lines)) > 6 * PAGE_BYTES

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: len(jobs_view(app).records) == 5, "the jobs")
        jobs_view(app).select_key(str(job))
        await pilot.press("enter")
        screen = await screen_of(pilot, JobScreen)
        log = screen.query_one(OutputLog)
        await wait_text(pilot, lines[-1])  # the last line, on screen at once
        assert lines[0] not in log.text_written and log.more_before
        assert len(log.text_written) < len(lines) // 4  # only the end was read
        assert "earlier: home" in screen_text(app)
        shown = len(log.text_written)
        await pilot.press("pageup")  # at the bottom: scrolls up within what is there
        await pilot.pause(0.2)
        assert len(log.text_written) == shown
        for _ in range(40):  # home: to the top, where the output before is read, a page
            before = len(log.text_written)  # at a time
            await pilot.press("home")
            await wait_for(pilot, lambda b=before: len(log.text_written) > b, "an earlier page")
            if not log.more_before:
                break
        assert not log.more_before
        assert log.text_written[0] == "tick"  # the job's own first line
        assert log.text_written[1:] == lines
        await pilot.press("home")
        await wait_text(pilot, "tick")  # the very start, on screen
        await pilot.press("end")
        await wait_text(pilot, lines[-1])

    run_app(daemon.socket, scenario)


def test_the_status_bar_follows_the_pushed_status(daemon: DaemonProcess,
                                                  seeded: dict[str, int]) -> None:
    """Running and queued counts come from daemon.status pushed on each change (the bar
    never polls)."""

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await wait_text(pilot, "0 running, 0 queued")
        job = daemon.call("runtemplate.run", id=seeded["manual"],
                          env={"SCRIPT": "sleep 3"})
        await wait_text(pilot, "1 running, 0 queued")
        assert app.link.state.status["running_jobs"] == [job["id"]]
        await wait_text(pilot, "0 running, 0 queued", timeout=30)

    run_app(daemon.socket, scenario)
