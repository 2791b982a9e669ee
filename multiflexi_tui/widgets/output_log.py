"""A job's output: stdout plain, stderr red, MultiFlexi's own lines dim; follows the end."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.timer import Timer
from textual.widgets import RichLog

STREAM_STYLES = {"stdout": "", "stderr": "red", "system": "italic dim cyan"}


class OutputLog(RichLog):
    """Chunks are written as lines; a partial line waits briefly for its end."""

    DEFAULT_CSS = """
    OutputLog { height: 1fr; background: $background; padding: 0 1; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        # min_width small: lines wrap at the visible width (RichLog's default of 78
        # would hide the last columns behind the scrollbar on an 80-column terminal)
        super().__init__(id=id, wrap=True, markup=False, highlight=False, max_lines=20000,
                         auto_scroll=True, min_width=20)
        self._partial: dict[str, str] = {}
        self._flush_timer: Timer | None = None
        self.lines_written = 0
        self.text_written: list[str] = []  # the plain text, for tests and copying

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
