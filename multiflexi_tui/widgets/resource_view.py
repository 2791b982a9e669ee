"""A paged, sortable, filterable list of records from the daemon (the base of every view).

Rows are loaded a page at a time (the next page when the cursor nears the end), so a list
over a huge history opens as fast as an empty one. Sorting and the `/` filter work on the
rows loaded so far (the daemon lists by id); a subclass may hand the filter to the daemon
instead (jobs: a search of their output, states, companies...). Pushed changes update rows
in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from multiflexi.errors import DaemonUnavailable, MultiFlexiError
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import DaemonLink, LinkState, link_of
from multiflexi_tui.widgets.filter_input import FilterInput
from multiflexi_tui.widgets.list_table import ListTable

Record = dict[str, Any]
MAX_WIDTH = 48  # a column never takes more than this; the rest is cut (see the detail)


def _sortable(value: Any) -> tuple[int, Any]:
    """Sort key that puts missing values last and never compares across types."""
    if value is None or value == "":
        return (2, "")
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (0, value)
    return (1, fmt.plain(value).lower())


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    cell: Callable[[Record], Any]
    sort: Callable[[Record], Any] | None = None
    width: int | None = None

    def sort_key(self, rec: Record) -> tuple[int, Any]:
        if self.sort is not None:
            return _sortable(self.sort(rec))
        return _sortable(rec.get(self.key))


@dataclass
class Page:
    items: list[Record]
    next: Any  # the cursor of the next page; None at the end
    total: int | None = None


async def offset_page(link: DaemonLink, method: str, cursor: Any, limit: int,
                      **params: Any) -> Page:
    """One page of a list the daemon pages with ``limit``/``offset`` (and a ``total``)."""
    offset = int(cursor or 0)
    reply = await link.call(method, limit=limit, offset=offset, **params)
    items = list(reply.get("items") or [])
    total = reply.get("total")
    end = offset + len(items)
    more = bool(items) and (total is None or end < int(total))
    return Page(items, end if more else None, total)


class ResourceView(Vertical):
    """Subclasses set ``NOUN`` and ``COLUMNS`` and implement :meth:`fetch` and :meth:`open`."""

    NOUN: ClassVar[str] = "items"
    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    FILTER_HINT: ClassVar[str] = "filter: words to find"
    DEFAULT_SORT: ClassVar[tuple[str, bool]] = ("id", False)  # column key, reverse
    PAGE_SIZE: ClassVar[int] = 100
    PREFETCH: ClassVar[int] = 15  # rows before the last one at which the next page loads
    # With a filter, keep loading pages while fewer rows than this match (up to MAX_SCAN).
    FILL: ClassVar[int] = 30
    MAX_SCAN: ClassVar[int] = 20

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "start_filter", "Filter", id="filter"),
        Binding("s", "cycle_sort", "Sort", id="sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("m", "load_more", "Load more rows", show=False),
        Binding("ctrl+r", "reload", "Reload", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    DEFAULT_CSS = """
    ResourceView { height: 1fr; }
    ResourceView > FilterInput { display: none; height: 1; border: none; padding: 0 1; }
    ResourceView.-filtering > FilterInput { display: block; }
    ResourceView > ListTable { height: 1fr; }
    ResourceView > .summary { height: 1; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, *, fixed: dict[str, Any] | None = None, id: str | None = None) -> None:
        super().__init__(id=id)
        self.fixed: dict[str, Any] = dict(fixed or {})
        self.records: dict[str, Record] = {}
        self.filter_text = ""
        self._next: Any = None
        self._total: int | None = None
        self._loaded_once = False
        self._loading = False
        self._error: str | None = None
        self._scanned = 0
        self._generation = -1
        self._pushed: dict[str, Record] = {}
        self._rebuild_timer: Timer | None = None
        self._filter_timer: Timer | None = None
        self._widths: dict[str, int] = {}
        keys = [c.key for c in self.COLUMNS]
        sort_key, reverse = self.DEFAULT_SORT
        self.sort_index = keys.index(sort_key) if sort_key in keys else 0
        self.sort_reverse = reverse

    # --- what subclasses provide ----------------------------------------------------------

    async def fetch(self, link: DaemonLink, cursor: Any) -> Page:
        raise NotImplementedError

    def open(self, rec: Record) -> None:
        """Open the detail screen of ``rec`` (enter)."""

    def accepts(self, rec: Record) -> bool:
        """Whether a pushed record belongs in this list (the fixed filters)."""
        return all(rec.get(k) == v for k, v in self.fixed.items())

    def server_filter(self) -> dict[str, Any]:
        """Daemon-side parameters taken from the filter text (none by default)."""
        return {}

    def client_tokens(self) -> list[str]:
        return self.filter_text.lower().split()

    def key_of(self, rec: Record) -> str:
        return str(rec["id"])

    def cell(self, col: Column, rec: Record) -> Any:
        """What ``rec`` shows in ``col`` (a view may show its own state, e.g. marks)."""
        return col.cell(rec)

    def summary_extra(self) -> list[str]:
        """More for the line under the list (e.g. how many rows are marked)."""
        return []

    # --- composition ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield FilterInput(self.FILTER_HINT, id="filter")
        yield ListTable(id="table")
        yield Static(classes="summary", id="summary")

    @property
    def table(self) -> ListTable:
        return self.query_one(ListTable)

    @property
    def link(self) -> DaemonLink:
        return link_of(self)

    def on_mount(self) -> None:
        self._build_columns()
        self.link.state_changed.subscribe(self, self._link_state)
        self._link_state(self.link.state)

    def focus_table(self) -> None:
        self.table.focus()

    def current(self) -> Record | None:
        """The record under the cursor."""
        table = self.table
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:
            return None
        return self.records.get(str(key.value)) if key.value is not None else None

    def select_key(self, key: str) -> None:
        """Put the cursor on the row of ``key`` (when it is shown)."""
        if self._rebuild_timer is not None:
            self._rebuild_timer.stop()
            self._timed_rebuild()
        try:
            self.table.move_cursor(row=self.table.get_row_index(key), animate=False)
        except RowDoesNotExist:
            pass

    # --- loading --------------------------------------------------------------------------

    def _link_state(self, state: LinkState) -> None:
        if state.connected and state.generation != self._generation:
            self._generation = state.generation
            self.reload()
        else:
            self._summarize()

    def reload(self) -> None:
        self._pushed.clear()
        self._scanned = 0
        self._load(reset=True)

    def load_more(self) -> None:
        if self._next is not None and not self._loading:
            self._load(reset=False)

    @work(exclusive=True, group="load", exit_on_error=False)
    async def _load(self, reset: bool) -> None:
        self._loading = True
        self._summarize()
        try:
            page = await self.fetch(self.link, None if reset else self._next)
        except MultiFlexiError as exc:
            self._error = exc.message
            if not isinstance(exc, DaemonUnavailable):
                self.notify(exc.message, title=f"Cannot list {self.NOUN}", severity="error")
            return
        finally:
            self._loading = False
        self._error = None
        if reset:
            self.records = {}
        for item in page.items:
            key = self.key_of(item)
            self.records[key] = self._pushed.get(key, item)
        self._pushed.clear()
        self._next = page.next
        self._total = page.total
        self._loaded_once = True
        self._scanned += 1
        self._rebuild()
        if (self.client_tokens() and self._next is not None and self._scanned < self.MAX_SCAN
                and self.table.row_count < self.FILL):
            self._load(reset=False)

    # --- live changes ---------------------------------------------------------------------

    def upsert(self, rec: Record) -> None:
        """A record pushed by the daemon: update its row, or add it when it belongs here."""
        key = self.key_of(rec)
        old = self.records.get(key)
        if old is None and not self._takes_new(rec):
            return
        if not self.accepts(rec):
            if old is not None:
                del self.records[key]
                self._schedule_rebuild()
            return
        merged = {**old, **rec} if old is not None else rec
        if self._loading:  # a page in flight may carry an older copy: this one wins
            self._pushed[key] = merged
        self.records[key] = merged
        if old is None:
            self.trim()
        if old is None or not self._matches(merged) or not self._matches(old):
            self._schedule_rebuild()
            return
        column = self.COLUMNS[self.sort_index]
        if column.sort_key(old) != column.sort_key(merged):
            self._schedule_rebuild()
            return
        table = self.table
        try:
            table.get_row_index(key)
        except RowDoesNotExist:
            self._schedule_rebuild()
            return
        for col in self.COLUMNS:
            value = self.cell(col, merged)
            if cell_len(fmt.plain(value)) > self._widths.get(col.key, 0):
                self._schedule_rebuild()  # wider than its column: measure again
                return
            table.update_cell(key, col.key, value)

    def trim(self) -> None:
        """Keep a long-running session's memory bounded (lists that grow override it)."""

    def _takes_new(self, rec: Record) -> bool:
        """A record not loaded yet is shown when it falls inside what is loaded."""
        if not self._loaded_once:
            return False
        if self._next is None:
            return True
        try:
            newest = max(int(k) for k in self.records) if self.records else None
        except ValueError:
            return False
        return newest is not None and int(rec["id"]) <= newest

    # --- filter and sort ------------------------------------------------------------------

    def action_start_filter(self) -> None:
        self.add_class("-filtering")
        field = self.query_one(FilterInput)
        field.value = self.filter_text
        field.focus()

    @on(FilterInput.Changed)
    def _filter_changed(self, event: FilterInput.Changed) -> None:
        event.stop()
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(0.15, lambda: self._apply_filter(event.value))

    @on(FilterInput.Submitted)
    def _filter_submitted(self, event: FilterInput.Submitted) -> None:
        event.stop()
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_filter(event.value)
        if not self.filter_text:
            self.remove_class("-filtering")
        self.focus_table()

    @on(FilterInput.Cancelled)
    def _filter_cancelled(self, event: FilterInput.Cancelled) -> None:
        event.stop()
        self.action_clear_filter()

    def action_clear_filter(self) -> None:
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self.query_one(FilterInput).value = ""
        self.remove_class("-filtering")
        self._apply_filter("")
        self.focus_table()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return bool(self.filter_text) or self.has_class("-filtering")
        return True

    def _apply_filter(self, text: str) -> None:
        before = self.server_filter()
        self.filter_text = text.strip()
        self.refresh_bindings()
        if self.server_filter() != before:
            self.reload()
            return
        self._scanned = 0
        self._rebuild()
        if self.client_tokens() and self._next is not None and self.table.row_count < self.FILL:
            self.load_more()

    def _matches(self, rec: Record) -> bool:
        tokens = self.client_tokens()
        if not tokens:
            return True
        text = " ".join(fmt.plain(col.cell(rec)) for col in self.COLUMNS).lower()
        text += " " + self.search_extra(rec).lower()
        return all(t in text for t in tokens)

    def search_extra(self, rec: Record) -> str:
        """More text the filter looks in (besides the visible cells)."""
        return ""

    def filter_note(self) -> str:
        """What the summary line adds about the filter (a subclass's)."""
        return ""

    def action_cycle_sort(self) -> None:
        self.sort_index = (self.sort_index + 1) % len(self.COLUMNS)
        self.sort_reverse = False
        self._rebuild()

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._rebuild()

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        index = event.column_index
        if index == self.sort_index:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_index, self.sort_reverse = index, False
        self._rebuild()

    def action_load_more(self) -> None:
        self._scanned = 0
        self.load_more()

    def action_reload(self) -> None:
        self.reload()

    # --- rendering ------------------------------------------------------------------------

    def _build_columns(self, widths: dict[str, int] | None = None) -> None:
        """(Re)create the columns; the sorted one's label carries ▲ or ▼. Widths are
        measured here from the rows rather than left to the table, so they are right
        from the first frame whatever the terminal reports while starting."""
        table = self.table
        table.clear(columns=True)
        self._widths = {}
        for i, col in enumerate(self.COLUMNS):
            label = Text(col.label)
            if i == self.sort_index:
                label.append("▼" if self.sort_reverse else "▲", style="bold")
            width = col.width or max(label.cell_len, (widths or {}).get(col.key, 0))
            self._widths[col.key] = width
            table.add_column(label, key=col.key, width=min(width, MAX_WIDTH))

    def _schedule_rebuild(self) -> None:
        if self._rebuild_timer is None:
            self._rebuild_timer = self.set_timer(0.05, self._timed_rebuild)

    def _timed_rebuild(self) -> None:
        self._rebuild_timer = None
        self._rebuild()

    def _rebuild(self) -> None:
        table = self.table
        keep = self.current()
        keep_key = self.key_of(keep) if keep else None
        keep_row = table.cursor_row
        column = self.COLUMNS[self.sort_index]
        rows = [r for r in self.records.values() if self._matches(r)]
        rows.sort(key=column.sort_key, reverse=self.sort_reverse)
        cells = [[self.cell(col, rec) for col in self.COLUMNS] for rec in rows]
        widths = {col.key: max((cell_len(fmt.plain(row[i])) for row in cells), default=0)
                  for i, col in enumerate(self.COLUMNS)}
        self._build_columns(widths)
        for rec, row in zip(rows, cells, strict=True):
            table.add_row(*row, key=self.key_of(rec))
        if rows:
            index = keep_row
            if keep_key is not None:
                try:
                    index = table.get_row_index(keep_key)
                except RowDoesNotExist:
                    pass
            table.move_cursor(row=max(0, min(index, len(rows) - 1)), animate=False)
        self._summarize()

    def _summarize(self) -> None:
        try:
            summary = self.query_one("#summary", Static)
        except Exception:
            return
        shown = self.table.row_count
        loaded = len(self.records)
        parts: list[str] = []
        if not self.link.connected and not self._loaded_once:
            parts.append("not connected to multiflexid")
        elif self._error and not self._loaded_once:
            parts.append(self._error)
        elif not self._loaded_once:
            parts.append(f"loading {self.NOUN}…")
        elif loaded == 0:
            parts.append(f"no {self.NOUN}")
        else:
            total = self._total if self._total is not None else None
            count = f"{shown} of {loaded}" if shown != loaded else f"{loaded}"
            if total is not None and total > loaded:
                count += f" (of {total})"
            parts.append(f"{count} {self.NOUN}")
            if self._next is not None:
                parts.append("more below (m)" if not self._loading else "loading more…")
        column = self.COLUMNS[self.sort_index]
        parts.append(f"sort: {column.label} {'▼' if self.sort_reverse else '▲'}")
        if self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        parts += self.summary_extra()
        note = self.filter_note()
        if note:
            parts.append(note)
        summary.update(Text(" · ".join(parts)))

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.refresh_bindings()  # the footer shows what applies to this row
        self._summarize()
        if self._next is not None and not self._loading and (
                event.cursor_row >= event.data_table.row_count - 1 - self.PREFETCH):
            self.load_more()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        rec = self.records.get(str(event.row_key.value))
        if rec is not None:
            self.open(rec)
