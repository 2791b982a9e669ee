"""`?`: every key of the TUI, by where it applies (read from the bindings themselves)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def _groups() -> list[tuple[str, list[Any]]]:
    from multiflexi_tui.app import MultiFlexiApp
    from multiflexi_tui.screens.app_detail import AppScreen
    from multiflexi_tui.screens.artifact import ArtifactScreen
    from multiflexi_tui.screens.company import CompanyScreen
    from multiflexi_tui.screens.confirm import ConfirmScreen
    from multiflexi_tui.screens.form import FormScreen
    from multiflexi_tui.screens.job import JobScreen
    from multiflexi_tui.screens.main import MainScreen
    from multiflexi_tui.screens.run_now import RunNowScreen
    from multiflexi_tui.screens.template import TemplateScreen
    from multiflexi_tui.screens.template_edit import TemplateEditScreen
    from multiflexi_tui.screens.wizard import WizardScreen
    from multiflexi_tui.widgets.actions_pane import ActionsPane
    from multiflexi_tui.widgets.apps_view import AppsView
    from multiflexi_tui.widgets.companies_view import CompaniesView
    from multiflexi_tui.widgets.company_env import CompanyEnvPane
    from multiflexi_tui.widgets.credentials_pane import CredentialsPane
    from multiflexi_tui.widgets.filter_input import FilterInput
    from multiflexi_tui.widgets.jobs_view import JobsView
    from multiflexi_tui.widgets.list_table import ListTable
    from multiflexi_tui.widgets.resource_view import ResourceView
    from multiflexi_tui.widgets.templates_view import TemplatesView

    return [
        ("Everywhere", [*MultiFlexiApp.BINDINGS, *MainScreen.BINDINGS]),
        ("Every list", [*ListTable.BINDINGS, *ResourceView.BINDINGS]),
        ("Filter line", FilterInput.BINDINGS),
        ("Companies (1)", CompaniesView.BINDINGS),
        ("Applications (2)", AppsView.BINDINGS),
        ("Run templates (3)", TemplatesView.BINDINGS),
        ("Jobs (4)", JobsView.BINDINGS),
        ("Job detail", JobScreen.BINDINGS),
        ("Template detail", TemplateScreen.BINDINGS),
        ("Template actions (4)", ActionsPane.BINDINGS),
        ("Template editor (e)", TemplateEditScreen.BINDINGS),
        ("Company detail", CompanyScreen.BINDINGS),
        ("Company credentials (4)", CredentialsPane.BINDINGS),
        ("Company environment (5)", CompanyEnvPane.BINDINGS),
        ("Application detail", AppScreen.BINDINGS),
        ("Artifact", ArtifactScreen.BINDINGS),
        ("Activation wizard (n)", WizardScreen.BINDINGS),
        ("Run now", RunNowScreen.BINDINGS),
        ("Forms (company, credential, clone, import, bulk...)", FormScreen.BINDINGS),
        ("Confirmation", ConfirmScreen.BINDINGS),
    ]


def key_text(binding: Binding) -> str:
    names = {"slash": "/", "question_mark": "?", "escape": "esc", "left_square_bracket": "[",
             "right_square_bracket": "]", "space": "space"}
    keys = []
    for key in binding.key.split(","):
        key = key.strip()
        keys.append(names.get(key, key.replace("ctrl+", "^")))
    return " ".join(keys)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close help"),
        Binding("question_mark", "dismiss", "Close help", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 76; max-width: 100%; height: 90%; border: round $accent;
                            background: $surface; padding: 0 1; }
    HelpScreen .title { text-style: bold; height: 1; }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Keys (esc closes)", classes="title")
            with VerticalScroll():
                yield Static(self._table())

    def _table(self) -> Text:
        from multiflexi_tui import jobsearch

        text = Text()
        for title, bindings in _groups():
            text.append(f"{title}\n", style="bold underline")
            seen: set[str] = set()
            for binding in bindings:
                if not isinstance(binding, Binding):
                    binding = Binding(*binding)
                key = key_text(binding)
                if key in seen:
                    continue
                seen.add(key)
                text.append(f"  {key:<8}", style="bold")
                text.append(f" {binding.description or binding.action}\n")
            text.append("\n")
            if title.startswith("Jobs"):
                text.append("Jobs search (/, run by the daemon)\n", style="bold underline")
                for token, meaning in jobsearch.HELP:
                    text.append(f"  {token:<12}", style="bold")
                    text.append(f" {meaning}\n")
                text.append("\n")
        text.rstrip()
        return text
