"""Which of the company's credentials a template gets (`space` chooses), with what the
application needs; the daemon's refusal of ``credentials`` is shown under the list."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import SelectionList, Static

from multiflexi_tui.widgets.field_input import Refusable, about


class CredentialChoice(Refusable, Vertical):
    DEFAULT_CSS = """
    CredentialChoice { height: 1fr; }
    CredentialChoice > .hint { color: $text-muted; height: auto; padding: 0 1; }
    CredentialChoice > SelectionList { height: 1fr; }
    CredentialChoice > .error { color: $error; height: auto; display: none; padding: 0 1; }
    CredentialChoice.-invalid > .error { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.credentials: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Static("", classes="hint", id="credential-hint")
        yield SelectionList[int](id="credential-list")
        yield Static("", classes="error")

    @property
    def options(self) -> SelectionList[int]:
        return self.query_one("#credential-list", SelectionList)

    def fill(self, credentials: Iterable[dict[str, Any]], chosen: Iterable[int],
             needs: list[str], owner: str) -> None:
        """Offer ``credentials`` (``chosen`` ticked); ``needs``: the application's
        credential types; ``owner``: the company, as the hint names it."""
        self.credentials = list(credentials)
        picked = set(chosen)
        options = self.options
        options.clear_options()
        for cred in self.credentials:
            keys = ", ".join((cred.get("values") or {}).keys())
            options.add_option((f"{cred.get('name')} ({cred.get('type')}): {keys}",
                                cred["id"], cred["id"] in picked))
        if self.credentials:
            options.highlighted = 0
        text = Text()
        have = {c.get("type") for c in self.credentials}
        if not self.credentials:
            text.append(f"{owner} has no credentials" + (
                " of the types the application needs" if needs else "") + ".")
        else:
            text.append("space chooses.")
        if needs:
            text.append(f" The application needs: {', '.join(needs)}.")
            lacking = [n for n in needs if n not in have]
            if lacking:
                text.append(f" Add one of {', '.join(lacking)} on the company's "
                            "Credentials tab.", style="bold")
        self.query_one("#credential-hint", Static).update(text)

    @property
    def selected(self) -> list[int]:
        return list(self.options.selected)

    def covered(self) -> set[str]:
        """The keys the chosen credentials provide."""
        chosen = set(self.selected)
        keys: set[str] = set()
        for cred in self.credentials:
            if cred["id"] in chosen:
                keys |= set((cred.get("values") or {}).keys())
        return keys

    def point_at(self, path: str, message: str) -> Widget | None:
        if path != "credentials" and not path.startswith("credentials."):
            return None
        self.query_one(".error", Static).update(Text(about(message, "credentials")))
        self.add_class("-invalid")
        return self.options

    def clear_refusal(self) -> None:
        self.remove_class("-invalid")
