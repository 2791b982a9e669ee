"""``check``: a Nagios / Icinga plugin.

One status line and perfdata on stdout, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also
for bad usage, as plugins do). What it looks at: the daemon (not running: CRITICAL;
degraded: WARNING), the queue's lag, jobs that failed for good and ticks that missed
their deadline in the window — all of them, or one company's, or one template's.
The worst finding decides; an UNKNOWN (the database cannot be read) ranks below a
CRITICAL but above a WARNING, since it may hide either.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from multiflexi.errors import MultiFlexiError
from multiflexid.domain.deadline import DeadlineError, format_span, parse_span
from multiflexid.services import deadlines, monitoring
from multiflexid.services.companies import get_company
from multiflexid.services.runtemplates import get_runtemplate

from .base import LeafCommand, state
from .system import daemon_status

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
_RANK = {OK: 0, WARNING: 1, UNKNOWN: 2, CRITICAL: 3}


class PluginCommand(LeafCommand):
    """Bad usage is UNKNOWN (3) for a monitoring plugin, not click's 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            setattr(exc, "exit_code", UNKNOWN)  # noqa: B010 (click declares it a ClassVar)
            raise


def _span(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    if value.strip() == "0":
        return 0
    try:
        return parse_span(value, f"--{param.name.replace('_', '-') if param.name else '?'}")
    except DeadlineError as exc:
        raise click.BadParameter(str(exc).split(": ", 1)[1]) from None


@dataclass
class Verdict:
    code: int = OK
    findings: list[str] = field(default_factory=list)
    perf: list[str] = field(default_factory=list)

    def add(self, code: int, text: str) -> None:
        if _RANK[code] > _RANK[self.code]:
            self.code = code
        if code != OK:
            self.findings.append(text)


def _level(value: float, warning: float | None, critical: float | None) -> int:
    if critical and value >= critical:
        return CRITICAL
    if warning and value >= warning:
        return WARNING
    return OK


def _perf(label: str, value: float | int, warning: float | None, critical: float | None,
          unit: str = "") -> str:
    def limit(x: float | None) -> str:
        return "" if not x else f"{x:g}"
    shown = f"{value:.0f}" if isinstance(value, float) else str(value)
    return f"{label}={shown}{unit};{limit(warning)};{limit(critical)};0"


def _names(rows: Sequence[dict[str, Any]], key: str = "name") -> str:
    shown = sorted({str(r.get(key) or r.get("runtemplate_id")) for r in rows})
    return ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")


@click.command("check", cls=PluginCommand)
@click.option("--company", "company_ref", help="Only this company (id or slug).")
@click.option("--runtemplate", "rt_id", type=int, help="Only this run template (id).")
@click.option("--window", default="24h", show_default=True, callback=_span,
              help="How far back failed jobs and missed deadlines count (e.g. 24h, 7d).")
@click.option("--lag-warning", default="5m", show_default=True, callback=_span,
              help="WARNING when the oldest job that could start has waited this long.")
@click.option("--lag-critical", default="30m", show_default=True, callback=_span,
              help="CRITICAL when it has waited this long.")
@click.option("--failed-warning", type=click.IntRange(min=0), default=1, show_default=True,
              help="WARNING at this many jobs failed for good in the window (0: never).")
@click.option("--failed-critical", type=click.IntRange(min=0), default=0, show_default=True,
              help="CRITICAL at this many (0: never).")
@click.option("--missed-warning", type=click.IntRange(min=0), default=0, show_default=True,
              help="WARNING at this many ticks that missed their deadline (0: never).")
@click.option("--missed-critical", type=click.IntRange(min=0), default=1, show_default=True,
              help="CRITICAL at this many (0: never).")
@click.option("--no-daemon", is_flag=True,
              help="Do not check the daemon (a host that only shares the database).")
def check(company_ref: str | None, rt_id: int | None, window: int, lag_warning: int,
          lag_critical: int, failed_warning: int, failed_critical: int, missed_warning: int,
          missed_critical: int, no_daemon: bool) -> None:
    """Nagios/Icinga check: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, with perfdata."""
    st = state()
    verdict = Verdict()
    running: int | None = None
    if not no_daemon:
        daemon = daemon_status(str(st.core.settings.socket))
        if not daemon["reachable"]:
            verdict.add(CRITICAL, f"multiflexid not running ({daemon.get('problem')})")
        else:
            running = int(daemon.get("running") or 0)
            if daemon.get("degraded"):
                verdict.add(WARNING, f"multiflexid {daemon.get('status')}")
    now = datetime.now(UTC)
    since = now - timedelta(seconds=window)
    doc: dict[str, Any] = {"window": format_span(window)}
    try:
        with st.read() as s:
            company_id = get_company(s, company_ref).id if company_ref else None
            if rt_id is not None:
                get_runtemplate(s, rt_id)
            queued, lag = monitoring.queue_figures(s, now, company_id, rt_id)
            failed = monitoring.failed_jobs(s, since, company_id=company_id,
                                            runtemplate_id=rt_id)
            missed = [t for t in deadlines.not_done(s, since, now, company_id=company_id,
                                                    runtemplate_id=rt_id)
                      if t["state"] == "missed"]
    except MultiFlexiError as exc:
        verdict.add(UNKNOWN, exc.message)
        _finish(verdict, doc)
        return
    except Exception as exc:  # the database is not reachable, say, not a crash
        verdict.add(UNKNOWN, "cannot read the database: "
                    + (str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        _finish(verdict, doc)
        return
    if missed:
        verdict.add(_level(len(missed), missed_warning, missed_critical),
                    f"{len(missed)} tick(s) missed the deadline ({_names(missed)})")
    if failed:
        verdict.add(_level(len(failed), failed_warning, failed_critical),
                    f"{len(failed)} job(s) failed ({_names(failed)})")
    level = _level(lag, lag_warning, lag_critical)
    if level != OK:
        verdict.add(level, f"queue lag {format_span(int(lag))}")
    verdict.perf += [
        _perf("missed", len(missed), missed_warning, missed_critical),
        _perf("failed", len(failed), failed_warning, failed_critical),
        _perf("lag", float(lag), lag_warning, lag_critical, "s"),
        _perf("queued", queued, None, None),
    ]
    if running is not None:
        verdict.perf.append(_perf("running", running, None, None))
    doc.update(missed=[{k: t[k] for k in ("runtemplate_id", "name", "company", "tick",
                                          "deadline")} for t in missed],
               failed=[{"id": f["id"], "runtemplate_id": f["runtemplate_id"],
                        "name": f["name"], "state": f["state"]} for f in failed],
               lag_seconds=round(lag, 1), queued=queued, running=running)
    _finish(verdict, doc)


def _finish(verdict: Verdict, doc: dict[str, Any]) -> None:
    name = NAMES[verdict.code]
    summary = "; ".join(verdict.findings) or "all jobs and deadlines fine"
    line = f"MULTIFLEXI {name} - {summary}"
    if verdict.perf:
        line += " | " + " ".join(verdict.perf)
    if state().json:
        click.echo(json.dumps({"status": name, "code": verdict.code, "summary": summary,
                               "perfdata": verdict.perf, **doc}, default=str))
    else:
        click.echo(line)
    raise click.exceptions.Exit(verdict.code)


def register(cli: click.Group) -> None:
    cli.add_command(check)
