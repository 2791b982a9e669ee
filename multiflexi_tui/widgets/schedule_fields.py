"""When a template runs and how: interval, cron, time zone, delay, executor (and, when
editing, the timeout), with the next due times the daemon computes for what is typed.

Shared by the activation wizard and the template editor. The executor is Native unless
the application has a container image (``ociimage``): then Podman and Docker are offered
too, as in the original."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import Input, Select, Static

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import link_of
from multiflexi_tui.widgets.field_input import LabeledRow

INTERVAL_CHOICES = [
    ("i — every minute", "i"), ("h — hourly", "h"), ("d — daily", "d"), ("w — weekly", "w"),
    ("m — monthly", "m"), ("y — yearly", "y"), ("c — cron expression", "c"),
    ("n — never (run by hand only)", "n"),
]
NATIVE = ("Native — a process on the daemon's host", "Native")


def executor_choices(app: dict[str, Any]) -> list[tuple[str, str]]:
    """The executors an application can run with: containers only when it has an image."""
    image = app.get("ociimage")
    if not image:
        return [NATIVE]
    return [NATIVE, (f"Podman — container {image}", "Podman"),
            (f"Docker — container {image}", "Docker")]


class ScheduleFields(Vertical):
    """The inputs keep the wizard's ids (``#interv #cron #timezone #delay #executor``, and
    ``#timeout`` with ``timeout=True``); :meth:`schedule` is what they say."""

    DEFAULT_CSS = """
    ScheduleFields { height: auto; }
    ScheduleFields #preview { margin-top: 1; height: auto; color: $text; }
    """

    def __init__(self, *, timeout: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.with_timeout = timeout
        self.preview: list[dict[str, Any]] = []
        self.preview_error: str | None = None
        self._timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield LabeledRow("Interval", Select(INTERVAL_CHOICES, value="d", allow_blank=False,
                                            id="interv", compact=True), "interv")
        yield LabeledRow("Cron (for c)", Input(
            id="cron", compact=True, disabled=True,
            placeholder="minute hour day month weekday: */15 * * * *"), "cron")
        yield LabeledRow("Time zone", Input(
            id="timezone", compact=True,
            placeholder="IANA name, e.g. Europe/Prague (empty: the daemon's)"), "timezone")
        yield LabeledRow("Delay (s)", Input("0", id="delay", compact=True, type="integer"),
                         "delay")
        yield LabeledRow("Executor", Select([NATIVE], value="Native", allow_blank=False,
                                            id="executor", compact=True), "executor")
        if self.with_timeout:
            yield LabeledRow("Timeout (s)", Input(
                "0", id="timeout", compact=True, type="integer",
                placeholder="seconds a job may run; 0: no limit"), "timeout")
        yield Static("", id="preview")

    # --- values -----------------------------------------------------------------------------

    def set_executors(self, app: dict[str, Any], value: str = "Native") -> None:
        select = self.query_one("#executor", Select)
        choices = executor_choices(app)
        select.set_options(choices)
        select.value = value if value in [v for _l, v in choices] else "Native"

    def load(self, rt: dict[str, Any]) -> None:
        """Fill the inputs from a stored template."""
        self.query_one("#interv", Select).value = rt.get("interv") or "n"
        self.query_one("#cron", Input).value = rt.get("cron") or ""
        self.query_one("#timezone", Input).value = rt.get("timezone") or ""
        self.query_one("#delay", Input).value = str(rt.get("delay") or 0)
        if self.with_timeout:
            self.query_one("#timeout", Input).value = str(rt.get("timeout") or 0)

    def schedule(self) -> dict[str, Any]:
        """``interv``, ``delay`` (an int when it is one), ``cron`` for ``c``, ``timezone``
        when given."""
        interv = self.query_one("#interv", Select).value
        out: dict[str, Any] = {"interv": str(interv) if interv is not Select.NULL else "n",
                               "delay": _number(self.query_one("#delay", Input).value)}
        cron = self.query_one("#cron", Input).value.strip()
        if out["interv"] == "c":
            out["cron"] = cron
        zone = self.query_one("#timezone", Input).value.strip()
        if zone:
            out["timezone"] = zone
        return out

    @property
    def executor(self) -> str:
        return str(self.query_one("#executor", Select).value)

    @property
    def timeout(self) -> int | str:
        return _number(self.query_one("#timeout", Input).value)

    # --- the next due times -----------------------------------------------------------------

    @on(Select.Changed, "#interv")
    def _interval_changed(self, event: Select.Changed) -> None:
        self.query_one("#cron", Input).disabled = event.value != "c"
        self.schedule_preview()

    @on(Input.Changed, "#cron, #timezone, #delay")
    def _schedule_changed(self, event: Input.Changed) -> None:
        self.schedule_preview()

    def schedule_preview(self) -> None:
        """Ask the daemon for the next due times shortly (after typing pauses)."""
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.3, self._preview)

    @work(exclusive=True, group="preview", exit_on_error=False)
    async def _preview(self) -> None:
        await self.fetch_preview()

    async def fetch_preview(self) -> bool:
        """Show the next due times (or what is wrong with the schedule); True when fine."""
        if self._timer is not None:
            self._timer.stop()
        schedule = self.schedule()
        target = self.query_one("#preview", Static)
        if not isinstance(schedule["delay"], int):
            self.preview, self.preview_error = [], "delay: a whole number of seconds"
        elif schedule["interv"] == "c" and not schedule.get("cron"):
            self.preview, self.preview_error = [], "cron: write a cron expression"
        else:
            try:
                reply = await link_of(self).call_with("schedule.preview", {
                    **schedule, "count": 5, "from": fmt.CLOCK().isoformat()})
                self.preview, self.preview_error = reply.get("due") or [], None
            except MultiFlexiError as exc:
                self.preview, self.preview_error = [], exc.message
        if self.preview_error:
            target.update(Text(self.preview_error, style="bold red"))
        elif not self.preview:
            target.update(Text("Never runs by itself: only by hand (r).", style="yellow"))
        else:
            zone = schedule.get("timezone") or "the daemon's zone"
            text = Text(f"Next due times ({zone}):", style="bold")
            for due in self.preview:
                text.append(f"\n  {fmt.due_text(due)}", style="")
            target.update(text)
        return self.preview_error is None


def _number(text: str) -> int | str:
    text = text.strip() or "0"
    return int(text) if text.lstrip("+").isdigit() else text
