"""`r`: run a template now, with optional one-off KEY=VALUE overrides."""

from __future__ import annotations

import re
import shlex
from typing import Any, ClassVar

from rich.highlighter import Highlighter
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from multiflexi.errors import MultiFlexiError
from multiflexi.secrecy import looks_secret
from multiflexi_tui.connection import link_of

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# KEY=VALUE as typed: the value runs to the next space outside quotes (or to the end).
_ASSIGNMENT = re.compile(r"""(?:(?<=\s)|^)([A-Za-z_][A-Za-z0-9_]*)="""
                         r"""((?:"(?:[^"\\]|\\.)*"?|'[^']*'?|[^\s"']+)*)""")
BULLET = "•"


def mask_typed(text: str, secret: set[str]) -> str:
    """``text`` with the values of secret keys (declared secret, or named like a secret)
    replaced by bullets, one per character, so the cursor stays where it is."""
    def hide(m: re.Match[str]) -> str:
        key, value = m.group(1), m.group(2)
        if key in secret or looks_secret(key):
            return f"{key}={BULLET * len(value)}"
        return m.group(0)

    return _ASSIGNMENT.sub(hide, text)


class MaskSecrets(Highlighter):
    """Shows the overrides input with secret values masked while they are typed."""

    def __init__(self) -> None:
        self.secret: set[str] = set()

    def __call__(self, text: str | Text) -> Text:
        plain = text.plain if isinstance(text, Text) else text
        return Text(mask_typed(plain, self.secret), no_wrap=True, overflow="ignore", end="")

    def highlight(self, text: Text) -> None:  # everything happens in __call__
        pass


def parse_overrides(text: str) -> dict[str, str]:
    """``A=1 B='two words'`` → ``{"A": "1", "B": "two words"}``; ValueError says what is wrong."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot read the overrides: {exc}") from None
    out: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"{word!r}: write KEY=VALUE")
        if not _KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a variable name")
        out[key] = value
    return out


class RunNowScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with the new job (or None when cancelled)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Cancel"),
        Binding("ctrl+r", "run", "Run", show=False),
    ]

    DEFAULT_CSS = """
    RunNowScreen { align: center middle; }
    RunNowScreen > Vertical { width: 76; max-width: 100%; height: auto; max-height: 100%;
                              border: thick $accent; background: $surface; padding: 0 1; }
    RunNowScreen .question { text-style: bold; margin-bottom: 1; }
    RunNowScreen .hint { color: $text-muted; }
    RunNowScreen #fields { color: $text-muted; max-height: 4; }
    RunNowScreen #error { color: $error; height: auto; }
    RunNowScreen Horizontal { height: auto; align-horizontal: right; }
    RunNowScreen Button { margin-left: 2; }
    """

    def __init__(self, rt: dict[str, Any]) -> None:
        super().__init__()
        self.rt = rt
        self.masking = MaskSecrets()

    def compose(self) -> ComposeResult:
        name = self.rt.get("name") or f"#{self.rt['id']}"
        company = f" for {self.rt['company']}" if self.rt.get("company") else ""
        with Vertical():
            yield Static(Text(f"Run template #{self.rt['id']} {name}{company} now?"),
                         classes="question")
            yield Static("One-off overrides for this run only (optional), KEY=VALUE "
                         "separated by spaces, quote values with spaces:", classes="hint")
            yield Input(placeholder="DRY_RUN=1 NOTE='two words'", id="overrides",
                        highlighter=self.masking)
            yield Static("", id="fields")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Run (enter)", variant="primary", id="run")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._describe()

    @work(exclusive=True, group="describe", exit_on_error=False)
    async def _describe(self) -> None:
        """What the job would get: the keys one may override, and what is missing."""
        try:
            env = await link_of(self).call("runtemplate.env", id=self.rt["id"])
        except MultiFlexiError:
            return
        keys = [e["key"] for e in env.get("environment") or []
                if not str(e.get("key", "")).startswith("MULTIFLEXI_")]
        self.masking.secret = {e["key"] for e in env.get("environment") or [] if e.get("secret")}
        self.query_one(Input).refresh()
        text = Text("keys: " + (" ".join(keys) if keys else "(none)"))
        if env.get("missing"):
            text.append("\nmissing (the job would be blocked): " + " ".join(env["missing"]),
                        style="bold")
        self.query_one("#fields", Static).update(text)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_run()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "run":
            self.action_run()
        else:
            self.dismiss(None)

    def action_run(self) -> None:
        try:
            env = parse_overrides(self.query_one(Input).value)
        except ValueError as exc:
            self._error(str(exc))
            return
        self._run(env)

    def _error(self, message: str) -> None:
        self.query_one("#error", Static).update(Text(message))

    @work(exclusive=True, group="run", exit_on_error=False)
    async def _run(self, env: dict[str, str]) -> None:
        self.query_one("#run", Button).disabled = True
        self._error("")
        try:
            secret = sorted(k for k in env if k in self.masking.secret or looks_secret(k))
            job = await link_of(self).call("runtemplate.run", id=self.rt["id"], env=env,
                                           secret_keys=secret, via="tui")
        except MultiFlexiError as exc:
            self._error(exc.message)
            self.query_one("#run", Button).disabled = False
            return
        self.dismiss(job)
