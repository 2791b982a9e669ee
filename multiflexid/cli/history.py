"""``job prune``: history housekeeping, only ever when an admin asks."""

from __future__ import annotations

from typing import Any

import click

from multiflexid.services.companies import get_company
from multiflexid.services.history import prune as do_prune

from .base import LeafCommand, emit, parse_time, state, table


def _report(d: dict[str, Any]) -> None:
    c = d["criteria"]
    keeping = f", keeping the newest {c['keep_last']} of each template" if c["keep_last"] \
        else ""
    which = f" of company {c['company']}" if c["company"] else ""
    verb = "removed" if d["removed"] else "would remove"
    click.echo(f"{verb} {d['total']['jobs']} job(s){which} ended before {c['before']}"
               f"{keeping}:")
    table([(slug, n["jobs"], n["output_bytes"], n["artifacts"], n["action_runs"])
           for slug, n in d["companies"].items()],
          ["company", "jobs", "output bytes", "artifacts", "action runs"])
    if not d["removed"]:
        click.echo("dry run: nothing was removed")


@click.command("prune", cls=LeafCommand)
@click.option("--before", required=True, metavar="ISO8601",
              help="Remove jobs that ended before this time: a date (its midnight UTC) or a "
                   "date and time with its zone (Z or +01:00).")
@click.option("--company", "company_ref", help="Only jobs of this company (id or slug).")
@click.option("--keep-last", type=click.IntRange(min=0), metavar="K",
              help="Keep the newest K finished jobs of each run template anyway.")
@click.option("--dry-run", is_flag=True,
              help="Say how many jobs, output bytes and artifacts per company would go.")
def prune(before: str, company_ref: str | None, keep_last: int | None,
          dry_run: bool) -> None:
    """Remove old jobs in a final state with their output, artifacts and action runs —
    never queued or running ones, never ones with deliveries still due. Recorded in the
    audit trail. Nothing else ever deletes history."""
    when = parse_time(before, "--before")
    assert when is not None  # a required option
    with state().session() as s:
        company = get_company(s, company_ref) if company_ref else None
        d = do_prune(s, before=when, company=company, keep_last=keep_last, dry_run=dry_run)
    emit(d, lambda: _report(d))


def register(group: click.Group) -> None:
    group.add_command(prune)
