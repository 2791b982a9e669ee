"""What every form of the TUI shares (companies, credentials, templates, environment,
clone, import, bulk changes).

`ctrl+s` saves, `esc` cancels, `enter` goes to the next input. The inputs are checked
first where that is cheap (the wizard's checks, :mod:`multiflexi_tui.validation`); the
daemon checks again and its refusal is shown under the input its ``data.field`` names
(and in full above the buttons). Nothing typed is lost when a save is refused: the form
stays as it was. The daemon is called in a worker, so the UI never waits on the socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Static, TabbedContent, TabPane

from multiflexi.errors import MultiFlexiError
from multiflexi_tui.connection import DaemonLink, link_of
from multiflexi_tui.widgets.field_input import FieldInput, Refusable


class Form:
    """The save/refusal logic, mixed into a screen. The screen has a ``#form-error``
    Static and implements :meth:`submit`."""

    _saving = False

    @property
    def link(self) -> DaemonLink:
        return link_of(self)  # type: ignore[arg-type]

    async def submit(self) -> Any:
        """Send the form to the daemon and return its answer (raise what it refuses)."""
        raise NotImplementedError

    def saved(self, result: Any) -> None:
        """What follows a successful save (default: close with the daemon's answer)."""
        self.dismiss(result)  # type: ignore[attr-defined]

    def covered(self) -> set[str]:
        """Keys that may stay empty though required (a credential provides them)."""
        return set()

    def fields(self) -> list[FieldInput]:
        return [f for f in self.query(FieldInput) if f.display]  # type: ignore[attr-defined]

    def form_error(self, message: str | Text) -> None:
        self.query_one("#form-error", Static).update(  # type: ignore[attr-defined]
            message if isinstance(message, Text) else Text(message))

    def check_fields(self) -> bool:
        """The cheap checks of every input; the first bad one gets the focus."""
        covered = self.covered()
        bad = [f for f in self.fields() if f.check(covered) is not None]
        if bad:
            self.form_error(f"{len(bad)} field(s) need attention: "
                            + ", ".join(f.key for f in bad))
            self.reveal(bad[0].query_one("#control"))
        return not bad

    def refused(self, exc: MultiFlexiError) -> None:
        """Show the daemon's refusal by the input it names; keep everything typed."""
        path = str(exc.data.get("field") or "").removeprefix("params.")
        target: Widget | None = None
        if path:
            for part in self.query("*"):  # type: ignore[attr-defined]
                if isinstance(part, Refusable):
                    target = part.point_at(path, exc.message)
                    if target is not None:
                        break
        self.form_error(exc.message)
        if target is not None:
            self.reveal(target)

    def reveal(self, widget: Widget) -> None:
        """Bring ``widget`` into view (its tab, its scroll position) and focus it."""
        for ancestor in widget.ancestors:
            if isinstance(ancestor, TabPane) and ancestor.id:
                try:
                    self.query_one(TabbedContent).active = ancestor.id  # type: ignore[attr-defined]
                except NoMatches:
                    pass
                break
        widget.focus()
        widget.call_after_refresh(widget.scroll_visible)

    def action_save(self) -> None:
        if not self._saving and self.check_fields():
            self._save()

    @work(exclusive=True, group="save", exit_on_error=False)
    async def _save(self) -> None:
        self._saving = True
        for part in self.query("*"):  # type: ignore[attr-defined]
            if isinstance(part, Refusable):
                part.clear_refusal()
        self.form_error("")
        try:
            result = await self.submit()
        except MultiFlexiError as exc:
            self.refused(exc)
            return
        finally:
            self._saving = False
        self.saved(result)


class FormScreen(Form, ModalScreen[Any]):
    """A form in a dialog: a title, the inputs of :meth:`inputs`, the error line, buttons.
    Dismisses with what the daemon answered (None when cancelled)."""

    SAVE: ClassVar[str] = "Save"
    SUBMIT_ON_ENTER: ClassVar[bool] = False  # enter saves (else: goes to the next input)

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    DEFAULT_CSS = """
    FormScreen { align: center middle; }
    FormScreen > #form { width: 76; max-width: 100%; height: auto; max-height: 100%;
                         border: thick $accent; background: $surface; padding: 0 1; }
    FormScreen #form-title { text-style: bold; height: auto; margin-bottom: 1; }
    FormScreen #form-body { height: auto; max-height: 70vh; }
    FormScreen .hint { color: $text-muted; height: auto; }
    FormScreen #form-error { color: $error; height: auto; }
    FormScreen #form-buttons { height: auto; align-horizontal: right; }
    FormScreen #form-buttons Button { margin-left: 2; }
    """

    def title_text(self) -> str | Text:
        return ""

    def inputs(self) -> Iterable[Widget]:
        return []

    def compose(self) -> ComposeResult:
        with Vertical(id="form"):
            yield Static(self.title_text(), id="form-title")
            with VerticalScroll(id="form-body"):
                yield from self.inputs()
            yield Static("", id="form-error")
            with Horizontal(id="form-buttons"):
                yield Button(f"{self.SAVE} (^s)", variant="primary", id="save", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.call_after_refresh(self.focus_first)

    def focus_first(self) -> None:
        fields = self.fields()
        if fields:
            fields[0].focus_control()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self.SUBMIT_ON_ENTER:
            self.action_save()
        else:
            self.focus_next()
