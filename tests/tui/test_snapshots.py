"""Snapshots of the main screens at 80×24 (pytest-textual-snapshot).

The data is made through the real services with fixed times (tests/tui/support.py); the
clock the TUI reads, the zone it shows times in, the daemon's version/user line and the
cursor blink are frozen, so every run renders the same. After a deliberate change of the
look: ``pytest tests/tui/test_snapshots.py --snapshot-update`` and review the SVGs in
tests/tui/__snapshots__/.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Select

from multiflexi.settings import load_settings
from multiflexi_tui import connection
from multiflexi_tui import format as fmt
from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.bulk import BulkScreen
from multiflexi_tui.screens.clone import CloneScreen
from multiflexi_tui.screens.company_form import CompanyFormScreen
from multiflexi_tui.screens.credential_form import CredentialFormScreen
from multiflexi_tui.screens.env_form import EnvVarScreen
from multiflexi_tui.screens.import_app import ImportScreen
from multiflexi_tui.screens.job import JobScreen
from multiflexi_tui.screens.run_now import RunNowScreen
from multiflexi_tui.screens.template import TemplateScreen
from multiflexi_tui.screens.template_edit import TemplateEditScreen
from multiflexi_tui.screens.wizard import WizardScreen
from multiflexi_tui.widgets.output_log import OutputLog
from multiflexi_tui.widgets.resource_view import ResourceView
from multiflexid.core import Core
from tests.support.daemon import running_daemon
from tests.support.factory import shell_app
from tests.tui.support import screen_of, seed, sqlite_env, wait_for, wait_text

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SIZE = (80, 24)


@pytest.fixture(scope="module")
def snapshot_daemon() -> Iterator[tuple[Path, dict[str, int]]]:
    """One daemon for the module: the snapshots only look."""
    base = Path(tempfile.mkdtemp(prefix="mfs-"))
    env = sqlite_env(base)
    saved = dict(os.environ)
    os.environ.update(env.vars())
    try:
        core = Core(load_settings())
        ids = seed(core)
        core.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        # the wizard's preview without a zone uses the daemon's: make it the same everywhere
        with running_daemon({**env.vars(), "TZ": "UTC"}, base):
            yield env.socket, ids
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmt, "CLOCK", lambda: NOW)
    monkeypatch.setattr(fmt, "LOCAL_ZONE", UTC)
    monkeypatch.setattr(connection, "_connected_text",
                        lambda status: "multiflexid on test-node · admin")


def make_app(socket: Path, view: str = "jobs") -> MultiFlexiApp:
    return MultiFlexiApp(socket, initial_view=view, cursor_blink=False)


def rows(name: str, count: int) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await wait_for(pilot, lambda: pilot.app.screen.query_one(
            f"#{name}-view", ResourceView).table.row_count == count, f"{count} {name}")
    return run_before


Snap = Callable[..., bool]


def test_jobs_view(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket), terminal_size=SIZE, run_before=rows("jobs", 5))


def test_templates_view(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=rows("templates", 4))


def test_companies_view(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket, "companies"), terminal_size=SIZE,
                        run_before=rows("companies", 2))


def test_apps_view(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket, "apps"), terminal_size=SIZE,
                        run_before=rows("apps", 3))


def test_jobs_filtered(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("jobs", 5)(pilot)
        await pilot.press("slash", *"state:succeeded report", "enter")
        await rows("jobs", 1)(pilot)

    assert snap_compare(make_app(socket), terminal_size=SIZE, run_before=run_before)


def _job(job_key: str, tab: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("jobs", 5)(pilot)
        ids = pilot.app._snapshot_ids  # type: ignore[attr-defined]
        pilot.app.screen.query_one("#jobs-view", ResourceView).select_key(str(ids[job_key]))
        await pilot.press("enter")
        screen = await screen_of(pilot, JobScreen)
        await wait_for(pilot, lambda: screen.query_one(OutputLog).lines_written >= 2
                       and screen.job.get("artifacts") is not None, "the job")
        await pilot.press(tab)
        await pilot.pause(0.2)
    return run_before


def test_job_output(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, ids = snapshot_daemon
    app = make_app(socket)
    app._snapshot_ids = ids  # type: ignore[attr-defined]
    assert snap_compare(app, terminal_size=SIZE, run_before=_job("job5", "1"))


def test_job_info(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, ids = snapshot_daemon
    app = make_app(socket)
    app._snapshot_ids = ids  # type: ignore[attr-defined]
    assert snap_compare(app, terminal_size=SIZE, run_before=_job("job3", "2"))


def test_job_environment(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, ids = snapshot_daemon
    app = make_app(socket)
    app._snapshot_ids = ids  # type: ignore[attr-defined]
    assert snap_compare(app, terminal_size=SIZE, run_before=_job("job3", "3"))


def test_template_detail(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("templates", 4)(pilot)
        await pilot.press("enter")
        screen = await screen_of(pilot, TemplateScreen)
        await wait_for(pilot, lambda: len(screen.preview) == 5, "the next due times")
        await pilot.pause(0.2)

    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=run_before)


def test_help(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("jobs", 5)(pilot)
        await pilot.press("question_mark")
        await wait_text(pilot, "Keys (esc closes)")

    assert snap_compare(make_app(socket), terminal_size=SIZE, run_before=run_before)


def test_run_now_dialog(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("templates", 4)(pilot)
        await pilot.press("r")
        await screen_of(pilot, RunNowScreen)
        await wait_text(pilot, "keys: MESSAGE")
        await pilot.press(*"MESSAGE=hello")

    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=run_before)


def _wizard_to(step: str) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("templates", 4)(pilot)
        await pilot.press("n")
        wizard = await screen_of(pilot, WizardScreen)
        await wait_text(pilot, "Wizardry")
        await pilot.press("down", "enter")
        await wait_text(pilot, "step 2 of 6")
        await pilot.press("enter")
        await wait_text(pilot, "Next due times")
        if step == "config":
            await pilot.press("ctrl+n")
            await wait_text(pilot, "step 4 of 6")
        await pilot.pause(0.3)
        assert wizard.step == step
    return run_before


def test_wizard_schedule(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=_wizard_to("schedule"))


def test_wizard_configuration(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=_wizard_to("config"))


# --- the forms (nothing is saved: the module's daemon is shared) ------------------------------


def test_company_form_refused(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    """A new company whose code is taken: the daemon's refusal under the field."""
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("companies", 2)(pilot)
        await pilot.press("n")
        form = await screen_of(pilot, CompanyFormScreen)
        await pilot.press(*"Initech a.s.", "enter", *"ACME")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: form.query_one("#field-slug").has_class("-invalid"),
                       "the refusal")
        await pilot.pause(0.2)

    assert snap_compare(make_app(socket, "companies"), terminal_size=SIZE,
                        run_before=run_before)


def test_credential_form(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("companies", 2)(pilot)
        await pilot.press("enter")
        await wait_text(pilot, "office@acme.example")
        await pilot.press("4")
        await wait_text(pilot, "probe secret")
        await pilot.press("n")
        form = await screen_of(pilot, CredentialFormScreen)
        await wait_text(pilot, "choose the type")
        await pilot.press("enter", "down", "down", "down", "enter")  # (blank) → Probe
        await wait_for(pilot, lambda: form.query("#field-PASSWORD"), "the Probe fields")
        await pilot.press("tab", *"main probe", "tab", *"secret-typed")
        await pilot.pause(0.2)

    assert snap_compare(make_app(socket, "companies"), terminal_size=SIZE,
                        run_before=run_before)


def _editor(tab_presses: int) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("templates", 4)(pilot)
        await pilot.press("e")  # nightly
        editor = await screen_of(pilot, TemplateEditScreen)
        await wait_for(pilot, lambda: editor.loaded and len(editor.schedule.preview) == 5,
                       "the template and its next due times")
        for _ in range(tab_presses):
            await pilot.press("ctrl+n")
        await pilot.pause(0.3)
    return run_before


def test_template_editor_schedule(snap_compare: Snap, snapshot_daemon: Any,
                                  frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=_editor(0))


def test_template_editor_configuration(snap_compare: Snap, snapshot_daemon: Any,
                                       frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=_editor(1))


def test_template_editor_credentials(snap_compare: Snap, snapshot_daemon: Any,
                                     frozen: None) -> None:
    socket, _ids = snapshot_daemon
    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=_editor(2))


def test_import_errors(snap_compare: Snap, snapshot_daemon: Any, frozen: None,
                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each problem of the file as `<json path>: <message>`."""
    socket, _ids = snapshot_daemon
    doc = {**shell_app("Broken", "echo"), "executable": 5}
    del doc["description"]
    (tmp_path / "broken.json").write_text(json.dumps(doc))
    monkeypatch.chdir(tmp_path)  # the path typed (and shown) is the same on every run

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("apps", 3)(pilot)
        await pilot.press("i")
        await screen_of(pilot, ImportScreen)
        await pilot.press(*"broken.json", "enter")
        await wait_text(pilot, "nothing was imported")
        await pilot.pause(0.2)

    assert snap_compare(make_app(socket, "apps"), terminal_size=SIZE, run_before=run_before)


def test_templates_marked(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("templates", 4)(pilot)
        await pilot.press("space", "down", "space")  # nightly and report
        await wait_text(pilot, "2 marked")

    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=run_before)


def test_bulk_dry_run(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    """The daemon's diff before anything changes."""
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("templates", 4)(pilot)
        await pilot.press("space", "space", "b")  # nightly, hourly
        form = await screen_of(pilot, BulkScreen)
        await pilot.press("enter", "down", "down", "down", "enter")  # set-config
        await wait_for(pilot, lambda: form.query_one("#field-key").display, "its inputs")
        await pilot.press("tab", *"SCRIPT", "tab", *"echo bulk", "ctrl+s")
        await wait_text(pilot, "would change")
        await pilot.pause(0.2)

    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=run_before)


def test_clone_dialog(snap_compare: Snap, snapshot_daemon: Any, frozen: None) -> None:
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("templates", 4)(pilot)
        await pilot.press("c")  # nightly
        form = await screen_of(pilot, CloneScreen)
        await wait_for(pilot, lambda: form.query_one(
            "#field-company #control", Select).value == "acme", "the companies")
        await pilot.press("tab", *"nightly for globex")
        await pilot.pause(0.2)

    assert snap_compare(make_app(socket, "templates"), terminal_size=SIZE,
                        run_before=run_before)


def test_company_environment_form(snap_compare: Snap, snapshot_daemon: Any,
                                  frozen: None) -> None:
    socket, _ids = snapshot_daemon

    async def run_before(pilot: Pilot[Any]) -> None:
        await rows("companies", 2)(pilot)
        await pilot.press("enter")
        await wait_text(pilot, "office@acme.example")
        await pilot.press("5")
        await wait_text(pilot, "no variables: n sets one")
        await pilot.press("n")
        await screen_of(pilot, EnvVarScreen)
        await pilot.press(*"ERP_PASSPHRASE", "tab", *"typed-secret", "tab", "space")
        await pilot.pause(0.2)

    assert snap_compare(make_app(socket, "companies"), terminal_size=SIZE,
                        run_before=run_before)
