"""Messages widgets post up, for the app to route: "attributes down, messages up".

A widget that wants a record opened posts :class:`Open`; the app (app.py) decides which
screen shows it and pushes it. Widgets and the shared actions never import the screens
they lead to, so no screen imports back into them (an import-linter contract keeps it).
"""

from __future__ import annotations

from typing import Any, Literal

from textual.message import Message

Kind = Literal["job", "template", "company", "app", "artifact"]


class Open(Message):
    """Show ``record`` (at least its ``id``) on its own screen, at ``tab`` if given."""

    def __init__(self, kind: Kind, record: dict[str, Any], tab: str | None = None) -> None:
        super().__init__()
        self.kind: Kind = kind
        self.record = record
        self.tab = tab
