"""The `/` filter line above a list: typing filters at once, `enter` keeps, `esc` clears."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Clear filter"),
        Binding("enter", "submit", "Keep filter"),
    ]

    class Cancelled(Message):
        """The admin pressed `esc` in the filter."""

    def __init__(self, placeholder: str = "filter: words to find", *,
                 id: str | None = None) -> None:
        super().__init__(placeholder=placeholder, id=id, compact=True)

    def action_cancel(self) -> None:
        self.post_message(self.Cancelled())
