"""A job's output: stdout plain, stderr red, MultiFlexi's own lines dim; follows the end.

It may hold only the end of a long output: while ``more_before`` is set, reaching its top
(scrolling up, `home`, `pgup`) posts :class:`OutputLog.Earlier`, and the screen answers
with :meth:`OutputLog.prepend` of the chunks before.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.actions import SkipAction
from textual.geometry import Size
from textual.message import Message
from textual.timer import Timer
from textual.widgets import RichLog

STREAM_STYLES = {"stdout": "", "stderr": "red", "system": "italic dim cyan"}


class OutputLog(RichLog):
    """Chunks are written as lines; a partial line waits briefly for its end."""

    DEFAULT_CSS = """
    OutputLog { height: 1fr; background: $background; padding: 0 1; }
    """

    class Earlier(Message):
        """The reader is at the top of what is loaded, and earlier output exists."""

    def __init__(self, *, id: str | None = None) -> None:
        # min_width small: lines wrap at the visible width (RichLog's default of 78
        # would hide the last columns behind the scrollbar on an 80-column terminal)
        super().__init__(id=id, wrap=True, markup=False, highlight=False, max_lines=20000,
                         auto_scroll=True, min_width=20)
        self._partial: dict[str, str] = {}
        self._flush_timer: Timer | None = None
        self.lines_written = 0
        self.text_written: list[str] = []  # the plain text, for tests and copying
        self.more_before = False  # output before the first line shown exists
        self.end_dropped = False  # paging back let the newest lines go (max_lines)

    def add_chunk(self, chunk: dict[str, Any]) -> None:
        stream = str(chunk.get("stream") or "stdout")
        text = self._partial.pop(stream, "") + str(chunk.get("data") or "")
        lines = text.split("\n")
        rest = lines.pop()
        for line in lines:
            self._line(line, stream)
        if rest:
            self._partial[stream] = rest
            if self._flush_timer is None:
                self._flush_timer = self.set_timer(0.5, self.flush_partial)

    def flush_partial(self) -> None:
        self._flush_timer = None
        partial, self._partial = self._partial, {}
        for stream, rest in partial.items():
            self._line(rest, stream)

    def note(self, message: str) -> None:
        """A line of the TUI's own (not from the job)."""
        self.write(Text(message, style="italic dim"))

    def _line(self, line: str, stream: str) -> None:
        line = line.rstrip("\r")
        self.text_written.append(line)
        if len(self.text_written) > 20000:
            del self.text_written[:5000]
        self.lines_written += 1
        self.write(Text(line, style=STREAM_STYLES.get(stream, "")))

    def clear_output(self) -> None:
        self.clear()
        self._partial.clear()
        self.text_written.clear()
        self.lines_written = 0
        self.more_before = self.end_dropped = False

    # --- earlier output --------------------------------------------------------------------

    def prepend(self, chunks: list[dict[str, Any]]) -> int:
        """Show ``chunks`` (in order) above what is shown, the view staying where it was;
        how many lines were added. Past ``max_lines`` the newest lines are let go."""
        lines: list[tuple[str, str]] = []
        for chunk in chunks:
            stream = str(chunk.get("stream") or "stdout")
            text = str(chunk.get("data") or "")
            lines += [(line.rstrip("\r"), stream) for line in text.removesuffix("\n").split("\n")]
        if not lines:
            return 0
        shown, self.lines = self.lines, []
        for line, stream in lines:  # rendered (wrapped) as write() does, into a list of its own
            self.write(Text(line, style=STREAM_STYLES.get(stream, "")), scroll_end=False)
        added = len(self.lines)
        self.lines = self.lines + shown
        if self.max_lines is not None and len(self.lines) > self.max_lines:
            self.lines = self.lines[: self.max_lines]
            self.end_dropped = True
        self._line_cache.clear()
        self.virtual_size = Size(self._widest_line_width, len(self.lines))
        self.text_written[:0] = [line for line, _stream in lines]
        self.lines_written += len(lines)
        self.scroll_to(y=self.scroll_y + added, animate=False, immediate=True)
        self.refresh()
        return added

    def _ask_earlier(self) -> bool:
        if self.more_before and self.scroll_y <= 0:
            self.post_message(self.Earlier())
            return True
        return False

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value <= 0 < old_value:
            self._ask_earlier()

    def action_scroll_home(self) -> None:
        if not self._ask_earlier():
            super().action_scroll_home()

    def action_page_up(self) -> None:
        if not self._ask_earlier():
            super().action_page_up()

    def action_scroll_up(self) -> None:
        if self._ask_earlier():
            return
        if not self.allow_vertical_scroll:
            raise SkipAction()
        self.scroll_up()
