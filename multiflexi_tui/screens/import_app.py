"""`i` on applications: import an application JSON file (upstream ``*.multiflexi.app.json``)
by its path. The TUI reads the file and sends its content (the daemon never reads the
admin's files); the daemon checks it exactly as `application import-json` does and each
problem is shown as ``<json path>: <message>``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

from multiflexi.errors import InvalidInput, MultiFlexiError
from multiflexi_tui.screens.form import FormScreen
from multiflexi_tui.widgets.field_input import FieldInput

MAX_BYTES = 4 * 1024 * 1024  # far more than any application definition


def read_definition(path: str) -> tuple[str, str]:
    """``(content, file name)`` of the file at ``path`` (``~`` expanded); InvalidInput
    naming the path when it cannot be read."""
    file = Path(path.strip()).expanduser()
    try:
        if file.stat().st_size > MAX_BYTES:
            raise InvalidInput(f"file: {file} is larger than {MAX_BYTES // 1024 // 1024} MiB; "
                               "not an application definition", {"field": "params.file"})
        return file.read_text(encoding="utf-8"), file.name
    except OSError as exc:
        raise InvalidInput(f"file: cannot read {file}: {exc.strerror or exc}",
                           {"field": "params.file"}) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"file: {file} is not UTF-8 text",
                           {"field": "params.file"}) from None


class ImportScreen(FormScreen):
    """Dismisses with ``{app, created, warnings}`` (None: cancelled)."""

    SAVE = "Import"
    SUBMIT_ON_ENTER = True

    DEFAULT_CSS = """
    ImportScreen #problems { color: $error; height: auto; }
    """

    def title_text(self) -> str:
        return "Import an application (JSON definition)"

    def inputs(self) -> Iterable[Widget]:
        yield FieldInput({"key": "file", "label": "File", "type": "string", "required": True,
                          "description": "path of the application JSON, e.g. "
                                         "/usr/lib/foo/multiflexi/foo.multiflexi.app.json"})
        yield Static("", id="problems")

    async def submit(self) -> Any:
        self.query_one("#problems", Static).update("")
        path = self.query_one("#field-file", FieldInput).value
        content, name = await asyncio.to_thread(read_definition, path)
        return await self.link.call("app.import", content=content, file=name)

    def refused(self, exc: MultiFlexiError) -> None:
        problems = exc.data.get("errors")
        if isinstance(problems, list) and problems:
            # every problem on its own line, as "<json path>: <message>"
            self.query_one("#problems", Static).update(Text("\n".join(map(str, problems))))
            self.form_error(f"{len(problems)} problem(s) in the file; nothing was imported")
            self.query_one("#field-file", FieldInput).focus_control()
            return
        super().refused(exc)
