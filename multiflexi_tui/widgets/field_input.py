"""One configuration field of an application, as the activation wizard asks for it:
typed input, required marked, secret masked, default filled in, checked before continuing."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Select, Static

from multiflexi_tui import format as fmt
from multiflexi_tui import validation


class FieldInput(Vertical):
    DEFAULT_CSS = """
    FieldInput { height: auto; margin-bottom: 1; }
    FieldInput > .label { height: 1; }
    FieldInput > .description { color: $text-muted; height: auto; }
    FieldInput > Input, FieldInput > Select { width: 100%; }
    FieldInput > .error { color: $error; height: auto; display: none; }
    FieldInput.-invalid > .error { display: block; }
    FieldInput.-invalid > Input { background: $error 30%; }
    """

    def __init__(self, field: dict[str, Any]) -> None:
        super().__init__(id=f"field-{field['key']}")
        self.field = field

    @property
    def key(self) -> str:
        return str(self.field["key"])

    def compose(self) -> ComposeResult:
        f = self.field
        ftype = f.get("type") or "string"
        label = Text(self.key, style="bold")
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
        default = validation.default_text(f)
        if ftype in ("bool", "set"):
            options = ([("true", "true"), ("false", "false")] if ftype == "bool"
                       else [(label, value) for value, label in
                             validation.options_of(f.get("options"))])
            values = [v for _l, v in options]
            initial: Any = default if default in values else Select.NULL
            yield Select(options, value=initial, allow_blank=not f.get("required") or
                         initial is Select.NULL, prompt="(not set)", id="control", compact=True)
        else:
            kind = {"integer": "integer", "float": "number"}.get(ftype, "text")
            yield Input(value=default, password=bool(f.get("secret")), type=kind,  # type: ignore[arg-type]
                        placeholder="(empty)" if not default else "", id="control",
                        valid_empty=True, compact=True)
        yield Static("", classes="error")

    @property
    def value(self) -> str:
        control = self.query_one("#control")
        if isinstance(control, Select):
            chosen = control.value
            return "" if chosen is Select.NULL else str(chosen)
        assert isinstance(control, Input)
        return control.value

    def set_value(self, value: str) -> None:
        control = self.query_one("#control")
        if isinstance(control, Select):
            control.value = value if value else Select.NULL
        else:
            assert isinstance(control, Input)
            control.value = value

    def check(self, covered: set[str] | frozenset[str] = frozenset()) -> str | None:
        """Show and return what is wrong (None when fine). ``covered``: keys a chosen
        credential provides, so a required field may stay empty."""
        value = self.value
        problem = validation.check(self.field, value)
        if problem is None and validation.missing(self.field, value) and self.key not in covered:
            problem = "required"
        self.set_class(problem is not None, "-invalid")
        self.query_one(".error", Static).update(Text(problem or ""))
        return problem

    def focus_control(self) -> None:
        self.query_one("#control").focus()
