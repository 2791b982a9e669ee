"""How action runs read in the TUI: a failed delivery stands out."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from multiflexi_tui import format as fmt

RUN_STYLES = {"succeeded": "green", "pending": "yellow", "running": "cyan",
              "failed": "bold red", "gave_up": "bold red reverse"}


def run_state(run: dict[str, Any]) -> Text:
    state = str(run.get("state") or "?")
    label = state
    if state == "pending" and run.get("attempts"):
        label = f"pending (retry {run['attempts'] + 1}/{run.get('max_attempts')})"
    return Text(label, style=RUN_STYLES.get(state, ""))


def run_for(run: dict[str, Any]) -> str:
    """What a run is for: ``job 42``, or ``tick 7`` (a missed or late deadline)."""
    if run.get("job_id") is None:
        return f"tick {run.get('tick_id')}"
    return f"job {run['job_id']}"


def runs_text(runs: list[dict[str, Any]] | None) -> Text | None:
    """One line per run: module, trigger, state, what the last attempt said."""
    if not runs:
        return None
    text = Text()
    for i, run in enumerate(runs):
        if i:
            text.append("\n")
        text.append(f"#{run['id']} {run.get('module')} on {run.get('trigger')}: ")
        text.append_text(run_state(run))
        if run.get("result"):
            text.append(f" — {run['result']}", style="red" if run.get("state") in
                        ("failed", "gave_up") else "dim")
        when = run.get("finished_at")
        if when:
            text.append(f" ({fmt.short_time(when)})", style="dim")
    return text


def any_failed(runs: list[dict[str, Any]] | None) -> bool:
    return any(r.get("state") in ("failed", "gave_up") for r in runs or [])
