"""Pilot tests of browsing: the four views, filter, sort, detail screens, help, paging."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.pilot import Pilot
from textual.widgets import TabbedContent

from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.app_detail import AppScreen
from multiflexi_tui.screens.company import CompanyScreen
from multiflexi_tui.screens.help import HelpScreen, _groups, key_text
from multiflexi_tui.screens.job import JobScreen
from multiflexi_tui.screens.main import MainScreen
from multiflexi_tui.screens.template import TemplateScreen
from multiflexi_tui.widgets.resource_view import ResourceView
from multiflexid.core import Core
from tests.support.daemon import DaemonProcess
from tests.tui.support import bulk_jobs, run_app, screen_of, screen_text, wait_for, wait_text


def view(app: MultiFlexiApp, name: str) -> ResourceView:
    return app.screen.query_one(f"#{name}-view", ResourceView)


def column(v: ResourceView, key: str) -> list[str]:
    table = v.table
    return [str(table.get_row_at(i)[[c.key for c in v.COLUMNS].index(key)])
            for i in range(table.row_count)]


async def loaded(pilot: Pilot[Any], name: str, rows: int) -> ResourceView:
    app: Any = pilot.app
    return await wait_for(pilot, lambda: view(app, name).table.row_count >= rows
                          and view(app, name), f"{rows} rows in {name}")


def test_views_switch_with_number_keys(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await wait_text(pilot, "multiflexid")
        tabs = app.screen.query_one(TabbedContent)
        assert tabs.active == "jobs"  # the jobs view opens first
        await loaded(pilot, "jobs", 5)
        text = screen_text(app)
        for label in ("1 Companies", "2 Applications", "3 Templates", "4 Jobs"):
            assert label in text  # visible tabs
        await pilot.press("1")
        assert tabs.active == "companies"
        companies = await loaded(pilot, "companies", 2)
        assert column(companies, "slug") == ["acme", "globex"]
        assert app.focused is companies.table
        await pilot.press("2")
        assert tabs.active == "apps"
        apps = await loaded(pilot, "apps", 3)
        assert set(column(apps, "name")) == {"Reporter", "Wizardry", "Shell"}
        await pilot.press("3")
        templates = await loaded(pilot, "templates", 4)
        assert column(templates, "name") == ["nightly", "hourly", "report", "manual"]
        assert "cron */15 * * * *" in screen_text(app)
        await pilot.press("4")
        jobs = view(app, "jobs")
        assert column(jobs, "id") == ["5", "4", "3", "2", "1"]  # newest first
        assert app.focused is jobs.table
        footer = screen_text(app).splitlines()[-1]
        for key in ("Open", "Filter", "Sort", "Logs", "Run again", "Help", "Quit"):
            assert key in footer, footer
        assert "Cancel" not in footer  # job 5 has ended: nothing to cancel

    run_app(daemon.socket, scenario)


def test_filter_sort_open_and_back(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        templates = await loaded(pilot, "templates", 4)
        # / filter: typing narrows at once, enter keeps it, esc clears it
        await pilot.press("slash", *"glob")
        await wait_for(pilot, lambda: templates.table.row_count == 2, "filtered rows")
        assert column(templates, "company") == ["globex", "globex"]
        await pilot.press("enter")
        assert app.focused is templates.table
        assert "filter: glob" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: templates.table.row_count == 4, "filter cleared")
        # s cycles the sort column, S reverses it
        await pilot.press("s")  # by name
        assert column(templates, "name") == ["hourly", "manual", "nightly", "report"]
        await pilot.press("S")
        assert column(templates, "name") == ["report", "nightly", "manual", "hourly"]
        assert "sort: Name ▼" in screen_text(app)
        # enter opens the detail of the row under the cursor, esc comes back
        await pilot.press("g", "enter")
        screen = await screen_of(pilot, TemplateScreen)
        assert screen.rt["name"] == "report"
        await wait_text(pilot, "Next due times")
        await pilot.press("2")  # its environment, as a job would get it now
        await wait_text(pilot, "run template")
        await pilot.press("3")  # its jobs
        await wait_for(pilot, lambda: screen.query_one("#template-jobs", ResourceView)
                       .table.row_count == 2, "the template's two jobs")
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        # jobs: state:NAME filters in the daemon; words filter the loaded rows
        await pilot.press("4")
        jobs = await loaded(pilot, "jobs", 5)
        await pilot.press("slash", *"state:failed", "enter")
        await wait_for(pilot, lambda: column(jobs, "id") == ["3"], "only the failed job")
        await pilot.press("escape")
        await wait_for(pilot, lambda: jobs.table.row_count == 5, "all jobs again")
        await pilot.press("slash", *"report", "enter")
        await wait_for(pilot, lambda: column(jobs, "id") == ["5", "3"], "report's jobs")
        await pilot.press("escape")
        # details of a company and an application
        await pilot.press("1")
        await loaded(pilot, "companies", 2)
        await pilot.press("enter")
        company = await screen_of(pilot, CompanyScreen)
        await wait_text(pilot, "office@acme.example")
        await pilot.press("4")  # credentials, secrets masked
        await wait_text(pilot, "PASSWORD=********")
        assert "s3cret" not in screen_text(app)
        await pilot.press("2")
        await wait_for(pilot, lambda: company.query_one("#company-templates", ResourceView)
                       .table.row_count == 2, "acme's templates")
        await pilot.press("escape")
        await pilot.press("2")
        await loaded(pilot, "apps", 3)
        await pilot.press("enter")
        await screen_of(pilot, AppScreen)
        await pilot.press("3")
        await wait_text(pilot, "Invalid configuration")
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)

    run_app(daemon.socket, scenario)


def test_help_lists_every_key(daemon: DaemonProcess) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")
        help_screen = await screen_of(pilot, HelpScreen)
        text = str(help_screen.query_one("VerticalScroll Static").render())
        for _title, bindings in _groups():
            for binding in bindings:
                assert binding.description in text, binding
                assert key_text(binding) in text, binding
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)

    run_app(daemon.socket, scenario)


def test_lists_are_paged_and_load_more_near_the_end(
        tui_core: Core, seeded: dict[str, int], daemon: DaemonProcess) -> None:
    bulk_jobs(tui_core, seeded["hourly"], 245)  # 250 jobs in all

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        jobs = await loaded(pilot, "jobs", 100)
        assert len(jobs.records) == 100  # one page, not the whole history
        assert "more below" in screen_text(app)
        await pilot.press("G")  # to the end: the next page comes
        await wait_for(pilot, lambda: len(jobs.records) == 200, "the second page")
        await pilot.press("G")
        await wait_for(pilot, lambda: len(jobs.records) == 250, "the last page")
        ids = [int(x) for x in column(jobs, "id")]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 250

    run_app(daemon.socket, scenario)


def test_a_huge_history_opens_as_fast_as_a_small_one(
        tui_core: Core, seeded: dict[str, int], tui_dir: Any,
        figures: Callable[[str], None]) -> None:
    from tests.conftest import Env
    from tests.support.daemon import running_daemon
    from tests.tui.support import sqlite_env

    def time_to_first_rows(env: Env) -> float:
        timings: list[float] = []
        start = time.monotonic()

        async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
            await wait_for(pilot, lambda: view(app, "jobs").table.row_count, "the first jobs",
                           timeout=30)
            timings.append(time.monotonic() - start)

        run_app(env.socket, scenario)
        return timings[0]

    small_env = sqlite_env(tui_dir)
    with running_daemon(small_env.vars(), tui_dir):
        small = time_to_first_rows(small_env)
    big_env = sqlite_env(tui_dir / "big")
    big_core = Core(_settings(big_env))
    from tests.tui.support import seed

    big_ids = seed(big_core)
    bulk_jobs(big_core, big_ids["hourly"], 100_000)
    big_core.close()
    with running_daemon(big_env.vars(), tui_dir):
        big = time_to_first_rows(big_env)
    figures(f"first jobs on screen: 5 jobs {small:.2f} s, 100 005 jobs {big:.2f} s")
    assert big < max(small * 3, small + 1.0), (small, big)


def _settings(env: Any) -> Any:
    import os

    from multiflexi.settings import load_settings

    saved = dict(os.environ)
    os.environ.update(env.vars())
    try:
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_job_detail_from_the_list(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await loaded(pilot, "jobs", 5)
        await pilot.press("down", "down", "enter")  # job 3: failed with exit code 3
        screen = await screen_of(pilot, JobScreen)
        assert screen.job_id == 3
        await wait_text(pilot, "bad config: X")
        await pilot.press("2")
        await wait_text(pilot, "3 (error: Invalid configuration)")
        for text in ("report (#", "globex", "Native", "test-node", "scheduler",
                     "2024-05-01 08:00:00 +00:00", "2.5s"):
            assert text in screen_text(app), text
        await pilot.press("3")
        await wait_text(pilot, "TOKEN")
        assert "********" in screen_text(app)
        assert "tok-SECRET-123" not in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)

    run_app(daemon.socket, scenario)


def test_a_long_session_keeps_the_jobs_list_bounded(
        daemon: DaemonProcess, seeded: dict[str, int], monkeypatch: Any) -> None:
    from multiflexi_tui.widgets.jobs_view import JobsView

    monkeypatch.setattr(JobsView, "MAX_ROWS", 4)
    monkeypatch.setattr(JobsView, "PREFETCH", 0)  # load more only at the very last row

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        jobs = await loaded(pilot, "jobs", 5)
        job = daemon.call("runtemplate.run", id=seeded["manual"])
        await wait_for(pilot, lambda: str(job["id"]) in jobs.records, "the new job")
        assert sorted(int(k) for k in jobs.records) == [3, 4, 5, 6]  # oldest let go
        await pilot.press("G")  # paging resumes exactly where the kept rows end
        await wait_for(pilot, lambda: len(jobs.records) == 6, "the rest")
        assert column(jobs, "id") == ["6", "5", "4", "3", "2", "1"]

    run_app(daemon.socket, scenario)


def test_a_big_terminal(daemon: DaemonProcess, seeded: dict[str, int]) -> None:
    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await loaded(pilot, "jobs", 5)
        text = screen_text(app)
        assert "scheduler" in text and "custom" in text  # every column has room
        await pilot.press("enter")
        await screen_of(pilot, JobScreen)
        await wait_text(pilot, "oops")

    run_app(daemon.socket, scenario, size=(200, 60))


def test_a_claimed_job_shows_as_claimed(daemon: DaemonProcess, seeded: dict[str, int],
                                        tui_core: Core) -> None:
    """A job another node has taken but not started: the jobs list says claimed (its own
    mark), not running, and the job screen has no begin for it."""
    from datetime import UTC, datetime, timedelta

    from multiflexid.services.jobs import create_job
    from multiflexid.store.orm import RunTemplate

    later = datetime.now(UTC) + timedelta(hours=1)  # not due for this daemon yet
    with tui_core.db.session() as s:
        rt = s.get(RunTemplate, seeded["manual"])
        assert rt is not None
        job_id = create_job(s, tui_core.transitions, rt, schedule_type="adhoc",
                            launched_by="t", after=later, box=tui_core.box).id
    with tui_core.db.session() as s:
        assert tui_core.transitions.claim(s, later, "elsewhere", 5) == [job_id]

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        jobs = await loaded(pilot, "jobs", 6)
        assert "▷ claimed" in column(jobs, "state")[0]
        await pilot.press("enter")
        screen = await screen_of(pilot, JobScreen)
        await wait_text(pilot, "▷ claimed")
        await pilot.press("2")
        await wait_text(pilot, "elsewhere")  # the node that claimed it
        assert screen.job["state"] == "claimed" and screen.job["begin"] is None

    run_app(daemon.socket, scenario)


def test_keys_a_user_may_not_use_are_hidden(daemon: DaemonProcess,
                                             seeded: dict[str, int]) -> None:
    """The TUI offers what the daemon says the user may do (daemon.status's access; the
    daemon refuses the rest anyway, see tests/e2e/test_access.py): a viewer gets no run,
    on/off, new or cancel keys; an operator of acme gets them on acme's rows only."""
    import dataclasses

    def as_roles(app: MultiFlexiApp, access: dict[str, Any]) -> None:
        link = app.link
        link.state = dataclasses.replace(link.state, status={**link.state.status,
                                                             "access": access})
        app.screen.refresh_bindings()

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await loaded(pilot, "jobs", 5)
        await pilot.press("3")
        templates = await loaded(pilot, "templates", 4)
        footer = lambda: screen_text(app).splitlines()[-1]  # noqa: E731
        assert "Run now" in footer() and "New" in footer()  # root: an admin
        as_roles(app, {"everywhere": "viewer", "companies": {}})
        await pilot.pause()
        assert "Run now" not in footer() and "On/off" not in footer()
        assert "New" not in footer() and "Filter" in footer()
        await pilot.press("r")  # a hidden key does nothing
        await pilot.pause()
        assert "Run template" not in screen_text(app)
        acme, globex = seeded["acme"], seeded["globex"]
        as_roles(app, {"everywhere": "viewer", "companies": {str(acme): "operator"}})
        for rec in templates.records.values():
            templates.select_key(templates.key_of(rec))
            await pilot.pause()
            shown = "Run now" in footer()
            assert shown == (rec["company_id"] == acme), (rec["name"], footer())
        assert globex != acme

    run_app(daemon.socket, scenario)
