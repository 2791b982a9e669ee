"""What every multiflexi-cli command shares: output format, errors, the Core."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import pwd
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput, MultiFlexiError
from multiflexi.settings import Settings, SettingsError, load_settings
from multiflexid.core import Core
from multiflexid.crypto import SecretKeyError
from multiflexid.store.audit import Actor


def cli_actor() -> Actor:
    """Who runs this command: the user who launched it (a CLI started as root acts as the
    data dir's owner but is still root's), and under sudo who invoked sudo."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    login = os.environ.get("SUDO_USER") or None
    return Actor(user, "cli", login if login != user else None)


@dataclass
class CliState:
    format: str = "text"
    config: str | None = None
    _core: Core | None = field(default=None, repr=False)

    @property
    def core(self) -> Core:
        if self._core is None:
            try:
                settings: Settings = load_settings(self.config)
            except SettingsError as exc:
                raise MultiFlexiError(str(exc)) from None
            # Every change this command makes goes to the audit trail as its user's.
            self._core = Core(settings, actor=cli_actor())
        return self._core

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction on a migrated database; its changes go to the audit trail
        as the user's who runs this command."""
        core = self._direct()
        core.ensure_schema()
        with core.db.session() as s:
            yield s

    @contextmanager
    def read(self) -> Iterator[Session]:
        core = self._direct()
        core.ensure_schema()
        with core.db.read_session() as s:
            yield s

    def _direct(self) -> Core:
        """The database, for root and the data dir's owner only (the file permissions
        say so; this says it clearly): anyone else goes through multiflexid."""
        core = self.core
        data_dir = core.settings.data_dir
        uid = os.geteuid()
        owner: int | None
        try:
            owner = data_dir.stat().st_uid
        except FileNotFoundError:
            return core  # not made yet (a new checkout): it will be this user's
        except PermissionError:
            owner = None  # cannot even look at it
        if uid == 0 or (owner is not None and uid == owner):
            return core
        owner_name = "the owner of the data directory"
        if owner is not None:
            with contextlib.suppress(KeyError):
                owner_name = "user " + pwd.getpwuid(owner).pw_name
        raise MultiFlexiError(
            f"{cli_actor().user} may not use the database directly: only root and "
            f"{owner_name} may ({data_dir} is theirs). Run it with sudo, or use the "
            "terminal UI (multiflexi-tui) and the commands that go through multiflexid: "
            "runtemplate run, job list, job output --follow, job cancel, status")

    @property
    def json(self) -> bool:
        return self.format == "json"

    def close(self) -> None:
        if self._core is not None:
            self._core.close()
            self._core = None


def state() -> CliState:
    ctx = click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:
        obj = ctx.ensure_object(CliState)
    return obj


def _set_format(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        st = ctx.find_object(CliState) or ctx.ensure_object(CliState)
        st.format = value


FORMAT_OPTION = click.Option(
    ["--format"], type=click.Choice(["text", "json"]), default=None, expose_value=False,
    is_eager=True, callback=_set_format,
    help="Output as text (default) or one JSON document on stdout.",
)


class LeafCommand(click.Command):
    """A command that also accepts ``--format`` after its name, as the original CLI does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.append(FORMAT_OPTION)


class AliasGroup(click.Group):
    """A group whose commands also answer as ``group:command`` and with alias names."""

    command_class = LeafCommand
    aliases: dict[str, str] = {}  # noqa: RUF012 (read-only table)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = self.aliases.get(cmd_name, cmd_name)
        if ":" in name:
            group_name, _, sub = name.partition(":")
            group = self.get_command(ctx, group_name)
            if isinstance(group, click.Group):
                return group.get_command(ctx, sub)
            return None
        return super().get_command(ctx, name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else name), cmd, rest


AliasGroup.group_class = AliasGroup


# --- output ----------------------------------------------------------------------------------


def emit(data: Any, text: Callable[[], None] | str | None = None) -> None:
    """Print ``data`` as JSON in json mode; otherwise run/print the text form."""
    if state().json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif callable(text):
        text()
    elif text is not None:
        click.echo(text)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], whole: bool = False) -> None:
    """Aligned columns; ``-`` for empty cells; stays greppable when piped.

    Cells longer than 60 characters are cut short unless ``whole`` (for the detail view of
    one thing, where the text is what the reader came for)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v)) if whole else min(max(widths[i], len(v)), 60)
    line = "  ".join(h.upper().ljust(widths[i]) for i, h in enumerate(headers))
    click.echo(line.rstrip())
    for row in cells:
        click.echo(
            "  ".join(
                (v if len(v) <= widths[i] else v[: widths[i] - 1] + "…").ljust(widths[i])
                for i, v in enumerate(row)
            ).rstrip()
        )
    if not rows:
        click.echo("(none)")


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        click.echo(f"{key.ljust(width)}  {_cell(value)}")


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value).replace("\n", " ")


def write_file(out: Path, content: bytes) -> None:
    """Write through a temporary file (never half a file); errors name the path."""
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(content)
        tmp.replace(out)
    except OSError as exc:
        raise MultiFlexiError(f"{out}: cannot write: {exc.strerror or exc}") from None


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time given as ``option`` (an error names it): a date alone is its
    midnight UTC; a date and time must say its zone (Z or +01:00), as nobody can tell which
    zone a bare time meant."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{option}: {value!r} is not an ISO 8601 time "
                           "(e.g. 2026-12-01 or 2026-12-01T08:00:00Z)") from None
    if when.tzinfo is not None:
        return when
    if len(value.strip()) == len("2026-12-01"):
        return when.replace(tzinfo=UTC)
    raise InvalidInput(f"{option}: {value!r} has no time zone (add Z or +01:00)")


def fail(message: str) -> MultiFlexiError:
    return MultiFlexiError(message)


def run_main(cli: click.Group, args: list[str] | None = None) -> int:
    """Run the CLI: errors become one line on stderr and exit 1; usage errors exit 2."""
    _LAST_STATE.clear()
    try:
        return _run(cli, args)
    finally:
        # Release the database connections (the CLI also runs in-process, e.g. in tests).
        for obj in _LAST_STATE:
            obj.close()
        _LAST_STATE.clear()


def _run(cli: click.Group, args: list[str] | None) -> int:
    try:
        # Without standalone mode click *returns* the code of a `raise Exit(n)`.
        code = cli.main(args=args, prog_name="multiflexi-cli", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("multiflexi-cli: aborted", err=True)
        return 1
    except click.ClickException as exc:
        obj = _current_state()
        if obj is not None and obj.json:  # scripts get their one JSON document
            name = "usage" if isinstance(exc, click.UsageError) else "error"
            click.echo(json.dumps({"error": {"name": name, "message": exc.format_message()}},
                                  ensure_ascii=False))
        exc.show()
        return exc.exit_code
    except SecretKeyError as exc:  # a missing or replaced key file: an error, not a crash
        return _run_error(MultiFlexiError(str(exc)))
    except MultiFlexiError as exc:
        return _run_error(exc)
    except BrokenPipeError:
        sys.stderr.close()
        return 1
    except KeyboardInterrupt:
        click.echo("multiflexi-cli: interrupted", err=True)
        return 130
    except Exception as exc:  # never a bare traceback for an admin; details on request
        if os.environ.get("MULTIFLEXI_DEBUG"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0]  # one line, never a dump of SQL
        click.echo(
            f"multiflexi-cli: internal error: {type(exc).__name__}: {first} "
            "(set MULTIFLEXI_DEBUG=1 for the traceback)", err=True,
        )
        return 1
    return 0


def _run_error(exc: MultiFlexiError) -> int:
    obj = _current_state()
    if obj is not None and obj.json:
        click.echo(json.dumps({"error": {"name": exc.name, "message": exc.message,
                                         **exc.data}}, ensure_ascii=False))
    click.echo(f"multiflexi-cli: error: {exc.message}", err=True)
    return exc.exit_code


_LAST_STATE: list[CliState] = []


def _current_state() -> CliState | None:
    return _LAST_STATE[-1] if _LAST_STATE else None


def remember_state(obj: CliState) -> None:
    _LAST_STATE.append(obj)
