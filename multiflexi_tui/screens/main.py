"""The main screen: four lists as tabs, switched with 1 2 3 4."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, TabbedContent, TabPane

from multiflexi_tui.widgets.apps_view import AppsView
from multiflexi_tui.widgets.companies_view import CompaniesView
from multiflexi_tui.widgets.connection_bar import ConnectionBar
from multiflexi_tui.widgets.jobs_view import JobsView
from multiflexi_tui.widgets.resource_view import ResourceView
from multiflexi_tui.widgets.templates_view import TemplatesView

VIEWS = ("companies", "apps", "templates", "jobs")


class MainScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show('companies')", "Companies", show=False, id="view-companies"),
        Binding("2", "show('apps')", "Applications", show=False, id="view-apps"),
        Binding("3", "show('templates')", "Run templates", show=False, id="view-templates"),
        Binding("4", "show('jobs')", "Jobs", show=False, id="view-jobs"),
    ]

    def __init__(self, initial: str = "jobs") -> None:
        super().__init__()
        self.initial = initial if initial in VIEWS else "jobs"

    def compose(self) -> ComposeResult:
        yield ConnectionBar()
        with TabbedContent(initial=self.initial, id="views"):
            with TabPane("1 Companies", id="companies"):
                yield CompaniesView(id="companies-view")
            with TabPane("2 Applications", id="apps"):
                yield AppsView(id="apps-view")
            with TabPane("3 Templates", id="templates"):
                yield TemplatesView(id="templates-view")
            with TabPane("4 Jobs", id="jobs"):
                yield JobsView(id="jobs-view")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.view(self.initial).focus_table()

    def view(self, name: str) -> ResourceView:
        return self.query_one(f"#{name}-view", ResourceView)

    @property
    def active(self) -> str:
        return self.query_one(TabbedContent).active

    def action_show(self, name: str) -> None:
        self.query_one(TabbedContent).active = name
        self.view(name).focus_table()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or ""
        if pane in VIEWS:
            self.view(pane).focus_table()
