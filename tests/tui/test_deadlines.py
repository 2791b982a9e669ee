"""The templates view says at a glance which template missed its deadline or was late,
and follows the change live; the detail screen says the deadline and the current tick."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.pilot import Pilot

from multiflexi_tui import format as fmt
from multiflexi_tui.app import MultiFlexiApp
from multiflexi_tui.screens.template import TemplateScreen
from multiflexi_tui.widgets.resource_view import ResourceView
from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import running_daemon
from tests.support.factory import make_template, overdue_template
from tests.tui.support import run_app, screen_of, screen_text, wait_for


def _cell(app: MultiFlexiApp, name: str) -> str:
    v = app.screen.query_one("#templates-view", ResourceView)
    keys = [c.key for c in v.COLUMNS]
    for i in range(v.table.row_count):
        row = v.table.get_row_at(i)
        if str(row[keys.index("name")]) == name:
            return str(row[keys.index("tick")])
    return ""


def test_missed_then_late_at_a_glance(tui_core: Core, tui_env: Env, tui_dir: Path) -> None:
    now = datetime.now(UTC)
    # Its ticks came while no daemon ran; the daemon's catch-up run takes a few seconds.
    overdue_template(tui_core, config={"SCRIPT": "sleep 4"})
    make_template(tui_core, name="new", interv="d", timezone="UTC", deadline_time="07:00",
                  now=now)
    make_template(tui_core, name="plain", interv="d", timezone="UTC", now=now)

    async def scenario(app: MultiFlexiApp, pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await wait_for(pilot, lambda: _cell(app, "plain") != "", "the templates")
        assert _cell(app, "overdue").startswith("✘ MISSED")
        assert _cell(app, "new") == "07:00"  # tracked from its next tick
        assert _cell(app, "plain") == fmt.DASH
        await wait_for(pilot, lambda: _cell(app, "overdue") == "⚠ late",
                       "the catch-up run ends late", timeout=30)
        await pilot.press("home", "enter")
        screen = await screen_of(pilot, TemplateScreen)
        await wait_for(pilot, lambda: "current tick" in screen_text(app), "the deadline")
        assert "+30m after the due time · current tick ⚠ late" in screen_text(app)
        assert screen.rt["tick"]["state"] == "fulfilled_late"

    with running_daemon(tui_env.vars(), tui_dir) as d:
        run_app(d.socket, scenario)


def test_each_tick_state_has_its_own_look() -> None:
    base = {"deadline": "07:00"}
    looks = {state: fmt.tick_text({**base, "tick": {"state": state,
                                                   "deadline": "2024-05-01T05:00:00Z"}})
             for state in ("open", "fulfilled", "fulfilled_late", "failed", "missed")}
    assert {k: v.plain for k, v in looks.items()} == {
        "open": "◷ due 05:00", "fulfilled": "✔ on time", "fulfilled_late": "⚠ late",
        "failed": "✘ failed", "missed": "✘ MISSED 05:00"}
    assert "red" in str(looks["missed"].style) and "green" in str(looks["fulfilled"].style)
    assert isinstance(fmt.tick_text({}), Text) and fmt.tick_text({}).plain == fmt.DASH
    assert sorted(["fulfilled", "missed", "open"], key=lambda s: fmt.tick_rank(
        {"tick": {"state": s}})) == ["missed", "open", "fulfilled"]
