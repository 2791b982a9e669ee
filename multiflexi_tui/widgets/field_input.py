"""One input of a form, as the activation wizard asks for an application's configuration
field: typed input, required marked, secret masked, default filled in, checked before
sending — and the daemon's refusal shown under it. Every form of the TUI (companies,
credentials, templates, the company environment...) is built from these.

A field is a dict in the shape of an application's ``environment`` entry: ``key``,
``type`` (``string integer float bool email url set password ...``), ``required``,
``secret``, ``description``, ``hint``, ``default``, ``options``.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Input, Select, Static

from multiflexi_tui import format as fmt
from multiflexi_tui import validation


def about(message: str, key: str) -> str:
    """The daemon's "<key>: <what is wrong>" as shown under the field: what is wrong."""
    head, sep, rest = message.partition(":")
    return rest.strip() if sep and head.strip() in (key, key.rsplit(".", 1)[-1]) else message


class Refusable:
    """A part of a form that a refusal's ``data.field`` (``params.<path>``) can point at."""

    def point_at(self, path: str, message: str) -> Widget | None:
        """Show ``message`` by the input of ``path``; return what to focus (None: not
        mine)."""
        return None

    def clear_refusal(self) -> None:
        """Forget the refusals shown (before the next save)."""


class FieldInput(Refusable, Vertical):
    DEFAULT_CSS = """
    FieldInput { height: auto; margin-bottom: 1; }
    FieldInput > .label { height: 1; }
    FieldInput > .description { color: $text-muted; height: auto; }
    FieldInput > Input, FieldInput > Select { width: 100%; }
    FieldInput > .error { color: $error; height: auto; display: none; }
    FieldInput.-invalid > .error { display: block; }
    FieldInput.-invalid > Input { background: $error 30%; }
    """

    def __init__(self, field: dict[str, Any], *, value: str | None = None,
                 path: str | None = None, kept: bool = False, id: str | None = None) -> None:
        """``value``: what the input starts with (default: the field's default); ``path``:
        the parameter it is sent as (default: its key); ``kept``: a stored secret, shown
        empty, that stays as it is unless something is typed."""
        super().__init__(id=id or f"field-{field['key']}")
        self.field = field
        self.initial = validation.default_text(field) if value is None else value
        self.path = path or str(field["key"])
        self.kept = kept

    @property
    def key(self) -> str:
        return str(self.field["key"])

    def compose(self) -> ComposeResult:
        f = self.field
        ftype = f.get("type") or "string"
        label = Text(str(f.get("label") or self.key), style="bold")
        if f.get("required"):
            label.append(" *", style="bold red")
        label.append(f"  {ftype}", style="dim")
        if f.get("secret"):
            label.append("  secret", style="italic yellow")
        yield Static(label, classes="label")
        description = fmt.text_of(f.get("description"))
        hint = fmt.text_of(f.get("hint"))
        if description or hint:
            yield Static(Text(" — ".join(x for x in (description, hint) if x)),
                         classes="description")
        initial = self.initial
        if ftype in ("bool", "set"):
            options = ([("true", "true"), ("false", "false")] if ftype == "bool"
                       else [(label, value) for value, label in
                             validation.options_of(f.get("options"))])
            values = [v for _l, v in options]
            chosen: Any = initial if initial in values else Select.NULL
            yield Select(options, value=chosen, allow_blank=not f.get("required") or
                         chosen is Select.NULL, prompt="(not set)", id="control", compact=True)
        else:
            kind = {"integer": "integer", "float": "number"}.get(ftype, "text")
            placeholder = ("(stored; type a new value to replace it)" if self.kept
                           else "(empty)" if not initial else "")
            yield Input(value=initial, password=bool(f.get("secret")), type=kind,  # type: ignore[arg-type]
                        placeholder=placeholder, id="control", valid_empty=True, compact=True)
        yield Static("", classes="error")

    @property
    def value(self) -> str:
        control = self.query_one("#control")
        if isinstance(control, Select):
            chosen = control.value
            return "" if chosen is Select.NULL else str(chosen)
        assert isinstance(control, Input)
        return control.value

    @property
    def changed(self) -> bool:
        """Whether the admin changed it (a kept secret: whether something was typed)."""
        return bool(self.value) if self.kept else self.value != self.initial

    def set_value(self, value: str) -> None:
        control = self.query_one("#control")
        if isinstance(control, Select):
            control.value = value if value else Select.NULL
        else:
            assert isinstance(control, Input)
            control.value = value

    def show_error(self, problem: str | None) -> None:
        self.set_class(problem is not None, "-invalid")
        self.query_one(".error", Static).update(Text(problem or ""))

    def check(self, covered: set[str] | frozenset[str] = frozenset()) -> str | None:
        """Show and return what is wrong (None when fine). ``covered``: keys a chosen
        credential provides, so a required field may stay empty."""
        value = self.value
        problem = validation.check(self.field, value)
        if (problem is None and validation.missing(self.field, value) and not self.kept
                and self.key not in covered):
            problem = "required"
        self.show_error(problem)
        return problem

    def point_at(self, path: str, message: str) -> Widget | None:
        if path != self.path and not path.startswith(self.path + "."):
            return None
        self.show_error(about(message, self.key))
        return self.query_one("#control")

    def clear_refusal(self) -> None:
        self.show_error(None)

    def focus_control(self) -> None:
        self.query_one("#control").focus()


class LabeledRow(Refusable, Vertical):
    """A one-line input with its label on the left (the wizard's schedule rows), and the
    line under it for the daemon's refusal of ``path``."""

    DEFAULT_CSS = """
    LabeledRow { height: auto; }
    LabeledRow > Horizontal { height: 1; margin-top: 1; }
    LabeledRow > Horizontal > .label { width: 14; height: 1; }
    LabeledRow > Horizontal > Input, LabeledRow > Horizontal > Select { width: 1fr; }
    LabeledRow > .error { display: none; color: $error; height: auto; padding-left: 14; }
    LabeledRow.-invalid > .error { display: block; }
    """

    def __init__(self, label: str, control: Widget, path: str) -> None:
        super().__init__(id=f"row-{path}")
        self.label = label
        self.control = control
        self.path = path

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static(self.label, classes="label")
            yield self.control
        yield Static("", classes="error")

    def point_at(self, path: str, message: str) -> Widget | None:
        if path != self.path:
            return None
        self.query_one(".error", Static).update(Text(about(message, self.path)))
        self.add_class("-invalid")
        return self.control

    def clear_refusal(self) -> None:
        self.remove_class("-invalid")
