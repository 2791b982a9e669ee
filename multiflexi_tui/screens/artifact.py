"""A text artifact of a job, read from the daemon (``artifact.get``)."""

from __future__ import annotations

import base64
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import link_of
from multiflexi_tui.widgets.connection_bar import ConnectionBar

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml",
              "application/javascript", "application/csv")


def as_text(content: bytes, content_type: str | None) -> str | None:
    """The content as text, or None when it is binary."""
    if b"\x00" in content[:8192]:
        return None
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        if content_type and content_type.startswith(TEXT_TYPES):
            return content.decode("utf-8", "replace")
        return None


class ArtifactScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    DEFAULT_CSS = """
    ArtifactScreen > #artifact-title { height: auto; padding: 0 1; background: $boost;
                                       text-style: bold; }
    ArtifactScreen > TextArea { height: 1fr; }
    ArtifactScreen > #artifact-note { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, artifact: dict[str, Any]) -> None:
        super().__init__()
        self.artifact = artifact

    def compose(self) -> ComposeResult:
        art = self.artifact
        yield ConnectionBar()
        yield Static(Text(f"Artifact #{art['id']} {art.get('filename') or art.get('name')} · "
                          f"{art.get('content_type') or '?'} · {fmt.size_text(art.get('size'))}"
                          f" · job #{art.get('job_id')}"), id="artifact-title")
        yield TextArea("", read_only=True, id="artifact-text", soft_wrap=True)
        yield Static("loading…", id="artifact-note")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()
        self._load()

    @work(exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        note = self.query_one("#artifact-note", Static)
        if self.artifact.get("skipped"):
            note.update(Text(f"not stored: {self.artifact.get('note') or 'skipped'}"))
            return
        try:
            reply = await link_of(self).call("artifact.get", id=self.artifact["id"])
        except MultiFlexiError as exc:
            note.update(Text(exc.message, style="bold red"))
            return
        content = base64.b64decode(reply.get("content_base64") or "")
        text = as_text(content, reply.get("content_type"))
        if text is None:
            note.update(Text(
                f"binary content ({fmt.size_text(reply.get('size'))}), not shown; save it "
                f"with: multiflexi-cli artifact get --id {self.artifact['id']} --file FILE"))
            return
        self.query_one(TextArea).load_text(text)
        note.update(Text("shown in part: the daemon sends at most 512 KiB"
                         if reply.get("truncated") else ""))
