"""What the TUI tests share: a SQLite installation with a real daemon, deterministic data
made through the real services, and helpers to drive the app with Pilot."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.style import Style
from sqlalchemy import insert, select, update
from textual.pilot import Pilot

from multiflexi_tui.app import MultiFlexiApp
from multiflexid.actions.chain import stop_template
from multiflexid.artifacts import CollectedFile, Collection
from multiflexid.core import Core
from multiflexid.domain.appjson import parse_app
from multiflexid.domain.credjson import parse_credential_type
from multiflexid.domain.jobstate import verdict
from multiflexid.services import apps, companies, credentials, jobs, lifecycle, runtemplates
from multiflexid.store.orm import Base, Job
from tests.conftest import Env
from tests.support.factory import shell_app

# Fixed moments: jobs of the seeded history ran on T0; templates were created "at" FUTURE,
# so their next due times lie years ahead and the daemon never runs them by itself. Each
# scheduled template names its zone: nothing depends on the machine's.
T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)


def sqlite_env(base: Path) -> Env:
    """An installation on SQLite only (TUI tests need no second backend)."""
    data = base / "data"
    data.mkdir(parents=True, exist_ok=True)
    return Env(data, f"sqlite:///{data / 'multiflexi.db'}", base / "mf.sock")


def reporter_app() -> dict[str, Any]:
    """A shell app with typed fields, an artifact, a result file and exit-code meanings."""
    doc = shell_app("Reporter", "echo hello")
    doc["environment"].update({
        "MESSAGE": {"type": "string", "description": "what to say", "defval": "hi"},
        "RESULT_FILE": {"type": "string", "description": "report", "defval": "notes.txt"},
    })
    doc["artifacts"] = [{"name": "notes", "path": r"notes\.txt", "type": "text"}]
    doc["exitCodes"] = {
        "0": {"description": "All went well", "severity": "success"},
        "3": {"description": "Invalid configuration", "severity": "error"},
    }
    return doc


def wizard_app() -> dict[str, Any]:
    """An app whose fields cover every type the activation wizard asks for."""
    doc = shell_app("Wizardry", "echo magic")
    doc["requirements"] = ["Probe"]
    doc["environment"].update({
        "COUNT": {"type": "integer", "description": "how many", "defval": "1",
                  "required": True},
        "RATIO": {"type": "float", "description": "share", "defval": "0.5"},
        "VERBOSE": {"type": "bool", "description": "talk more", "defval": False},
        "MAIL": {"type": "email", "description": "who to tell", "defval": ""},
        "API_URL": {"type": "url", "description": "server", "required": True},
        "MODE": {"type": "set", "description": "how", "defval": "fast",
                 "options": {"fast": "Fast", "slow": "Slow"}},
        "PASSWORD": {"type": "password", "description": "from the credential",
                     "required": True},
    })
    return doc


def import_app(core: Core, doc: dict[str, Any]) -> int:
    definition, _warnings = parse_app(json.dumps(doc))
    with core.db.session() as s:
        app, _created = apps.upsert_app(s, definition)
        return app.id


def seed(core: Core) -> dict[str, int]:
    """Two companies, three apps, four templates, a credential and five finished jobs with
    output and an artifact — every value fixed, so screens render the same every time."""
    from multiflexi import examples

    core.ensure_schema()
    ids: dict[str, int] = {}
    ids["reporter"] = import_app(core, reporter_app())
    ids["wizardry"] = import_app(core, wizard_app())
    ids["shell"] = import_app(core, shell_app("Shell", "echo hello"))
    box = core.box
    with core.db.session() as s:
        for path in examples.credential_type_files():
            credentials.upsert_credential_type(
                s, parse_credential_type(path.read_text(), str(path)))
        acme = companies.create_company(s, name="Acme s.r.o.", slug="acme", ic="12345678",
                                        email="office@acme.example")
        globex = companies.create_company(s, name="Globex a.s.", slug="globex",
                                          ic="87654321", email="it@globex.example")
        ids["acme"], ids["globex"] = acme.id, globex.id
        cred = credentials.create_credential(
            s, acme, credentials.get_credential_type(s, "Probe"), "probe secret",
            {"PASSWORD": "s3cret-Value"}, box)
        ids["credential"] = cred.id
        reporter = apps.get_app(s, ids["reporter"])
        shell = apps.get_app(s, ids["shell"])
        templates = [
            ("nightly", reporter, acme, {"interv": "d", "timezone": "Europe/Prague",
                                        "deadline_time": "07:00"}, {}),
            ("hourly", shell, acme, {"interv": "h", "timezone": "UTC"}, {"SCRIPT": "echo tick"}),
            ("report", reporter, globex, {"interv": "c", "cron": "*/15 * * * *",
                                          "timezone": "UTC"},
             {"SCRIPT": "echo report; echo oops >&2; echo done > notes.txt"}),
            ("manual", shell, globex, {"interv": "n"}, {"SCRIPT": "echo by hand"}),
        ]
        for name, app, company, sched, config in templates:
            rt = runtemplates.create_runtemplate(s, app, company, box, FUTURE, name=name,
                                                 config=config, **sched)
            ids[name] = rt.id
        # Switched off by a Stop action with a reason (shown wherever the template is).
        stop_template(s, ids["manual"], "bank login refused", FUTURE)
    history = [
        ("nightly", 0, "succeeded", [("stdout", "starting\n"), ("stdout", "42 rows\n")]),
        ("hourly", 0, "succeeded", [("stdout", "tick\n")]),
        ("report", 3, "failed", [("stdout", "report\n"), ("stderr", "bad config: X\n")]),
        ("hourly", 0, "succeeded", [("stdout", "tick\n")]),
        ("report", 0, "succeeded", [("stdout", "report\n"), ("stderr", "oops\n"),
                                    ("system", "[multiflexi] collected notes.txt\n")]),
    ]
    for n, (name, code, state, chunks) in enumerate(history):
        ids[f"job{n + 1}"] = _finished_job(core, ids[name], T0 + timedelta(hours=n), code,
                                           state, chunks)
    _pin_timestamps(core)
    return ids


def _pin_timestamps(core: Core) -> None:
    """Rows get created_at/updated_at from the clock; pin them for screens that show them."""
    with core.db.session() as s:
        for table in Base.metadata.sorted_tables:
            pinned = {c: T0 for c in ("created_at", "updated_at") if c in table.c}
            if pinned:
                s.execute(update(table).values(pinned))


def _finished_job(core: Core, rt_id: int, begin: datetime, code: int, state: str,
                  chunks: list[tuple[str, str]]) -> int:
    box = core.box
    with core.db.session() as s:
        rt = runtemplates.get_runtemplate(s, rt_id)
        kind = runtemplates.recurrence(rt).schedule_type
        job = jobs.create_job(s, core.transitions, rt, schedule_type=kind,
                              launched_by="scheduler", after=begin, box=box, tick=begin)
        job_id = job.id
        resolved = runtemplates.resolve_env(s, rt, box, job_id=job_id)
    with core.db.session() as s:
        assert core.transitions.claim(s, begin, "test-node", 10) == [job_id]
        core.transitions.start(s, job_id, "test-node", begin)
        env = {**resolved.masked(), "MULTIFLEXI_VERSION": "test"}  # same on every release
        # what the dispatcher records when it starts a job (the shape job.get reads)
        core.transitions.launched(s, job_id, command=["sh", "-c", "echo"],
                                  env={"values": env}, pid=None, begin=begin)
        rows = [{"job_id": job_id, "seq": i, "stream": stream, "at": begin,
                 "data": data.encode()} for i, (stream, data) in enumerate(chunks)]
        lifecycle.write_output(s, rows, {job_id: (sum(len(r["data"]) for r in rows), 0)})
        if any("notes.txt" in d for _s, d in chunks):
            content = b"notes of the report\nline two\n"
            lifecycle.save_artifacts(s, job_id, Collection(files=[CollectedFile(
                filename="notes.txt", name="notes", content_type="text/plain",
                size=len(content), sha256="0" * 64, content=content)]), begin)
        end = begin + timedelta(seconds=2.5)
        outcome = "exited" if state in ("succeeded", "failed") else state
        ended = core.transitions.end(s, job_id, verdict(outcome, code, None, None), end)
        assert ended.state == state
    return job_id


def bulk_jobs(core: Core, rt_id: int, count: int) -> None:
    """``count`` finished jobs straight into the table (a big history, fast)."""
    with core.db.session() as s:
        rt = runtemplates.get_runtemplate(s, rt_id)
        base = {"runtemplate_id": rt.id, "app_id": rt.app_id, "company_id": rt.company_id,
                "runtemplate_name": rt.name, "state": "succeeded", "schedule_type": "hourly",
                "executor": "Native", "launched_by": "scheduler", "overrides": {},
                "attempt": 1, "exitcode": 0, "node": "test-node"}
        template = s.scalar(select(Job).limit(1))
        assert template is None or template.id  # the table exists
        batch = []
        for i in range(count):
            moment = T0 + timedelta(minutes=i)
            batch.append({**base, "schedule": moment, "begin": moment,
                          "end": moment + timedelta(seconds=1)})
            if len(batch) == 10000:
                s.execute(insert(Job), batch)
                batch = []
        if batch:
            s.execute(insert(Job), batch)


# --- driving the app ---------------------------------------------------------------------------


def screen_text(app: MultiFlexiApp) -> str:
    """What the terminal shows now, as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system=None, record=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text()


def drawn_style(app: MultiFlexiApp, needle: str) -> Style:
    """The style the terminal draws ``needle`` in now (its colours as they reach the
    screen, after the theme and the table's own styles)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    update = app.screen._compositor.render_update(full=True,
                                                  screen_stack=app._background_screens)
    for segment in console.render(update):
        if needle in segment.text and segment.style is not None:
            return segment.style
    raise AssertionError(f"{needle!r} is not drawn in one piece; the screen:\n"
                         f"{screen_text(app)}")


def reddish(style: Style) -> bool:
    """Whether text in ``style`` reads as red: its foreground (or, reversed, its
    background) is clearly more red than green and blue."""
    color = style.bgcolor if style.reverse else style.color
    if color is None:
        return False
    r, g, b = color.get_truecolor()
    return r > 150 and r > 2 * max(g, b)


async def wait_for(pilot: Pilot[Any], check: Callable[[], object], what: str,
                   timeout: float = 20.0) -> Any:  # noqa: ASYNC109 (reports the screen)
    """Let the app run until ``check()`` is truthy; fail with the screen when it never is."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            result = check()
        except Exception:
            result = None
        if result:
            return result
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}; the screen:\n"
                         f"{screen_text(pilot.app)}")  # type: ignore[arg-type]


def notified(app: Any, needle: str) -> bool:
    """Whether a notification (toast) containing ``needle`` was raised (``run_test`` does not
    draw toasts)."""
    return any(needle in str(n.message) for n in app._notifications)


async def screen_of(pilot: Pilot[Any], kind: type[Any], timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    """Wait until a screen of ``kind`` is on top and mounted; return it."""
    app = pilot.app
    screen = await wait_for(pilot, lambda: isinstance(app.screen, kind) and app.screen.is_mounted
                            and app.screen, f"the {kind.__name__}", timeout)
    await pilot.pause()
    return screen


async def wait_text(pilot: Pilot[Any], needle: str,
                    timeout: float = 20.0) -> None:  # noqa: ASYNC109
    await wait_for(pilot, lambda: needle in screen_text(pilot.app),  # type: ignore[arg-type]
                   f"{needle!r} on screen", timeout)


def run_app(socket: Path, scenario: Callable[[MultiFlexiApp, Pilot[Any]], Awaitable[None]],
            *, size: tuple[int, int] = (80, 24), **app_kw: Any) -> None:
    """Run the TUI headless at ``size`` and play ``scenario`` with Pilot."""

    async def main() -> None:
        app = MultiFlexiApp(socket, backoff_max=0.5, cursor_blink=False, **app_kw)
        async with app.run_test(size=size) as pilot:
            await scenario(app, pilot)
            assert app.is_running, "the app stopped"

    asyncio.run(main())
