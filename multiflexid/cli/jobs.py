"""``job``, ``artifact`` and ``queue`` commands."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput, NotFound
from multiflexid.presenters import artifact_dict, iso, job_dict, next_due
from multiflexid.services import joblist
from multiflexid.services import jobs as svc
from multiflexid.services.apps import get_app
from multiflexid.services.companies import get_company
from multiflexid.store.orm import (
    JOB_STATES,
    Artifact,
    Job,
    RunTemplate,
)

from . import live
from .base import AliasGroup, emit, fields, parse_time, state, table, write_file
from .runtemplates import _run, _secret_option
from .tail import Chunk, last_lines


@click.group(cls=AliasGroup)
def job() -> None:
    """Jobs: every run, with its output, exit code and artifacts."""


@job.command("create")
@click.option("--template", "rt_id", type=int, required=True, help="Run template id.")
@click.option("--env", "env_items", multiple=True, metavar="KEY=VALUE",
              help="One-off override. Repeatable.")
@_secret_option("One-off override, kept secret")
@click.option("--wait", is_flag=True, help="Follow the output; exit with the job's code.")
def create(rt_id: int, env_items: tuple[str, ...], secret_items: tuple[str, ...],
           wait: bool) -> None:
    """Run a job of a run template now (same as `runtemplate run`)."""
    _run(rt_id, env_items, secret_items, wait)


# The CLI's names of job.list's fields, for messages.
_OPTIONS = {"state": "--state", "sort": "--sort", "time_field": "--time", "until": "--until",
            "since": "--since", "text": "--grep", "cursor": "--cursor"}


@job.command("list")
@click.option("--company", "company_ref", help="Company id or slug.")
@click.option("--runtemplate", "rt_id", type=int, help="Run template id.")
@click.option("--app", "app_ref", help="Application id or uuid.")
@click.option("--state", "job_states", type=click.Choice(JOB_STATES), multiple=True,
              help="Only this state. Repeatable: any of them.")
@click.option("--since", help="Only jobs created (see --time) at or after this ISO 8601 "
                              "date or time (UTC if no zone).")
@click.option("--until", help="Only jobs created (see --time) before this ISO 8601 time.")
@click.option("--time", "time_field", type=click.Choice(joblist.TIME_FIELDS),
              default="created", show_default=True,
              help="What --since/--until bound: when a job was created, began or ended.")
@click.option("--grep", "text", metavar="TEXT",
              help="Only jobs whose output holds TEXT (a substring on one line, any case, "
                   f"at least {joblist.MIN_TEXT} characters).")
@click.option("--sort", type=click.Choice(joblist.SORTS), default="id", show_default=True,
              help="Order by id, begin, end or duration (jobs without it come last).")
@click.option("--order", type=click.Choice(["desc", "asc"]), default="desc",
              show_default=True, help="Descending (newest, longest first) or ascending.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True,
              help="How many.")
@click.option("--before", "before_id", type=int, help="Only jobs older than this id (paging "
                                                      "by id, newest first).")
@click.option("--cursor", help="Start after this point (what the previous page said).")
def list_(company_ref: str | None, rt_id: int | None, app_ref: str | None,
          job_states: tuple[str, ...], since: str | None, until: str | None,
          time_field: str, text: str | None, sort: str, order: str, limit: int,
          before_id: int | None, cursor: str | None) -> None:
    """List jobs, newest first: filtered, sorted and searched by the database (through the
    daemon when it runs, with your roles; else directly). A page ends with the cursor of
    the next one on stderr."""
    f = joblist.JobFilter(states=job_states, runtemplate_id=rt_id,
                          since=parse_time(since, "--since"), until=parse_time(until, "--until"),
                          time_field=time_field, text=text)
    if before_id is not None:
        if cursor is not None or (sort, order) != ("id", "desc"):
            raise InvalidInput("--before: only with --sort id --order desc (use --cursor)")
        cursor = f"id~desc~~{before_id}"
    joblist.check(f, sort, order == "desc", cursor, lambda field: _OPTIONS.get(field, field))
    client = live.connect()
    if client is not None:
        with client:
            rows, following = _list_through_daemon(client, f, company_ref, app_ref, sort,
                                                   order, cursor, limit)
    else:
        with state().read() as s:
            f = replace(f, company_id=get_company(s, company_ref).id if company_ref else None,
                        app_id=get_app(s, app_ref).id if app_ref else None)
            page = joblist.list_jobs(s, f, sort=sort, desc=order == "desc", cursor=cursor,
                                     limit=limit)
            rows, following = page.items(), page.next_cursor

    def text_rows() -> None:
        table([(r["id"], r["state"], r["runtemplate_id"], r["runtemplate_name"],
                r["company"], r["schedule_type"], r["begin"] or r["schedule"], r["exitcode"],
                r["launched_by"]) + ((r["match"]["line"],) if f.text else ())
               for r in rows],
              ["id", "state", "tpl", "template", "company", "type", "begin/due", "exit",
               "by"] + (["match"] if f.text else []))

    emit(rows, text_rows)
    if following is not None:
        click.echo(f"more: --cursor {following}", err=True)


def _list_through_daemon(client: Any, f: joblist.JobFilter, company_ref: str | None,
                         app_ref: str | None, sort: str, order: str, cursor: str | None,
                         limit: int) -> tuple[list[dict[str, Any]], str | None]:
    params: dict[str, Any] = {"sort": sort, "order": order, "limit": min(limit, 1000),
                              "cursor": cursor, "state": list(f.states) or None,
                              "runtemplate_id": f.runtemplate_id, "time_field": f.time_field,
                              "since": iso(f.since), "until": iso(f.until), "text": f.text}
    if company_ref:
        key = "id" if company_ref.strip().isdigit() else "slug"
        ref: Any = int(company_ref) if key == "id" else company_ref
        params["company_id"] = client.call("company.get", **{key: ref})["id"]
    if app_ref:
        key = "id" if app_ref.strip().isdigit() else "uuid"
        params["app_id"] = client.call("app.get", **{key: int(app_ref) if key == "id"
                                                      else app_ref})["id"]
    rows: list[dict[str, Any]] = []
    while True:  # the daemon's pages are at most 1000 jobs
        page = client.call_with("job.list", {k: v for k, v in params.items() if v is not None})
        rows += page["items"]
        following = page["next_cursor"]
        if following is None or len(rows) >= limit:
            return rows, following
        params.update(cursor=following, limit=min(limit - len(rows), 1000))


@job.command("show")
@click.option("--id", "job_id", type=int, required=True, help="Job id.")
def show(job_id: int) -> None:
    """Show a job: state, times, exit code and its meaning, report, environment."""
    with state().read() as s:
        d = svc.job_view(s, job_id)

    def text() -> None:
        meaning = d["exit_meaning"]
        exit_text = d["exitcode"]
        if meaning:
            exit_text = f"{d['exitcode']} ({meaning['severity']}: {meaning['description']})"
        rows: list[tuple[str, Any]] = [
            ("id", d["id"]), ("state", d["state"]), ("reason", d["reason"]),
            ("template", f"{d['runtemplate_id']} {d['runtemplate_name']}"),
            ("app", d["app"]), ("company", d["company"]), ("type", d["schedule_type"]),
            ("due", d["schedule"]), ("executor", d["executor"]), ("node", d["node"]),
            ("launched by", d["launched_by"]), ("begin", d["begin"]), ("end", d["end"]),
            ("exit code", exit_text), ("pid", d["pid"]), ("attempt", d["attempt"]),
            ("retry of", d["retry_of"]),
            ("command", " ".join(d["command"]) if d["command"] else None),
            ("output", f"{d['output_bytes']} bytes"
             + (f", {d['output_dropped']} dropped over the cap" if d["output_dropped"] else "")),
        ]
        if d["report"]:
            rows += [("report", f"{d['report']['status']}: {d['report']['message'] or ''}"),
                     ("metrics", d["report"]["metrics"])]
        fields(rows)
        if d["environment"]:
            click.echo("\nenvironment:")
            for key, value in sorted(d["environment"].items()):
                click.echo(f"  {key}={value}")
        if d["artifacts"]:
            click.echo("\nartifacts:")
            table([(a["id"], a["filename"], a["size"], a["content_type"], a["skipped"])
                   for a in d["artifacts"]], ["id", "file", "size", "type", "skipped"])
        if d["action_runs"]:
            from .actions import run_rows

            click.echo("\naction runs:")
            run_rows(d["action_runs"])

    emit(d, text)


@job.command("output")
@click.option("--id", "job_id", type=int, required=True, help="Job id.")
@click.option("--stream", type=click.Choice(["stdout", "stderr"]),
              help="Only this stream (default: both, interleaved as they came).")
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new output until the job ends (needs the daemon); "
                   "exit with the job's exit code.")
@click.option("--tail", "-n", "tail", type=click.IntRange(min=1), metavar="N",
              help="Only the last N lines (as tail -n counts them; with --follow, then "
                   "what comes). Read from the end: quick for a job that printed much.")
def output(job_id: int, stream: str | None, follow: bool, tail: int | None) -> None:
    """Print a job's output as it was captured (stdout to stdout, stderr and MultiFlexi's
    own lines to stderr)."""
    if follow:
        client = live.connect("job output --follow")
        assert client is not None
        with client:
            final = live.follow(client, job_id, stream, tail=tail)
        live.report_end(final)
        raise click.exceptions.Exit(live.exit_status(final))
    with state().read() as s:
        svc.get_job(s, job_id)
        chunks: list[Any] = []
        if tail is not None:
            chunks = _tail_of(s, job_id, stream, tail)
        else:
            after = -1
            while page := svc.read_output(s, job_id, after_seq=after, stream=stream):
                chunks.extend(page)
                after = page[-1].seq
    if state().json:
        emit([{"seq": c.seq, "stream": c.stream, "at": iso(c.at),
               "data": c.data.decode("utf-8", "replace")} for c in chunks])
        return
    # The job's stdout to stdout, its stderr and MultiFlexi's own lines to stderr, in the
    # order they came (each stream flushed before the other is written).
    current = None
    for c in chunks:
        target = sys.stdout.buffer if c.stream == "stdout" else sys.stderr.buffer
        if current is not None and current is not target:
            current.flush()
        current = target
        data = c.data if c.stream != "system" else c.data.rstrip(b"\n") + b"\n"
        target.write(data)
    if current is not None:
        current.flush()


@dataclass(frozen=True)
class _Chunk:
    """A chunk of output as printed (the first of a tail cut where its lines begin)."""

    seq: int
    stream: str
    data: bytes
    at: datetime


def _tail_of(s: Session, job_id: int, stream: str | None, n: int) -> list[_Chunk]:
    """The chunks of the job's last ``n`` lines, read from the end back (with their
    times, for --format json)."""
    stamps: dict[int, datetime] = {}

    def pages() -> Iterator[list[Chunk]]:
        before = None
        while True:
            page = svc.read_output(s, job_id, from_end=True, before_seq=before,
                                   stream=stream, limit=500)
            if not page:
                return
            stamps.update((c.seq, c.at) for c in page)
            yield [(c.seq, c.stream, c.data) for c in page]
            before = page[0].seq

    return [_Chunk(seq, kind, data, stamps[seq]) for seq, kind, data in last_lines(pages(), n)]


@job.command("cancel")
@click.option("--id", "job_id", type=int, required=True, help="Job id.")
def cancel(job_id: int) -> None:
    """Cancel a job: a running one is stopped (SIGTERM, then SIGKILL after the grace
    period), a queued one never starts."""
    client = live.connect()
    if client is not None:
        with client:
            d = client.call("job.cancel", id=job_id)
        emit(d, f"job {job_id}: " + ("stopping" if d.get("cancel") == "requested"
                                     else "cancelled before it ran"))
        return
    from datetime import UTC, datetime

    st = state()
    with st.session() as s:  # no daemon here: the database says what can be done
        outcome = svc.cancel(s, st.core.transitions, job_id, datetime.now(UTC),
                             live.current_user())
        d = {**job_dict(svc.get_job(s, job_id)), "cancel": outcome}
    emit(d, f"job {job_id}: " + ("cancel requested; the node running it stops it"
                                 if outcome == "requested" else "cancelled before it ran"))


# --- artifacts -------------------------------------------------------------------------------


@click.group(cls=AliasGroup)
def artifact() -> None:
    """Artifacts: files jobs left behind."""


@artifact.command("list")
@click.option("--job", "job_id", type=int, required=True, help="Job id.")
def artifact_list(job_id: int) -> None:
    """List the artifacts of a job."""
    with state().read() as s:
        svc.get_job(s, job_id)
        rows = [artifact_dict(a) for a in s.scalars(
            select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id))]
    emit(rows, lambda: table(
        [(r["id"], r["filename"], r["size"], r["content_type"], r["sha256"], r["skipped"],
          r["note"]) for r in rows],
        ["id", "file", "size", "type", "sha256", "skipped", "note"],
    ))


@artifact.command("get")
@click.option("--id", "artifact_id", type=int, required=True, help="Artifact id.")
@click.option("--file", "out", type=click.Path(path_type=Path),
              help="Write the content here (default: stdout).")
def artifact_get(artifact_id: int, out: Path | None) -> None:
    """Write an artifact's content to a file or stdout."""
    with state().read() as s:
        a = s.get(Artifact, artifact_id)
        if a is None:
            raise NotFound(f"no artifact with id {artifact_id}")
        if a.content is None:
            raise NotFound(f"artifact {artifact_id} ({a.filename}) was not stored: {a.note}")
        content, meta = a.content, artifact_dict(a)
    if out is None:
        sys.stdout.buffer.write(content)
        sys.stdout.buffer.flush()
        return
    write_file(out, content)
    emit({**meta, "file": str(out)}, f"written {out} ({len(content)} bytes)")


# --- queue -----------------------------------------------------------------------------------


@click.group(cls=AliasGroup)
def queue() -> None:
    """The queue: jobs waiting to run and templates due next."""


@queue.command("list")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
def queue_list(limit: int) -> None:
    """Jobs waiting to run, then the next due templates."""
    with state().read() as s:
        queued = [{"job_id": job.id, "after": iso(sch.after), "state": job.state,
                   "runtemplate_id": job.runtemplate_id, "name": job.runtemplate_name,
                   "schedule_type": job.schedule_type}
                  for sch, job in svc.queue(s, limit)]
        waiting = [{"job_id": j.id, "state": j.state, "runtemplate_id": j.runtemplate_id,
                    "name": j.runtemplate_name, "schedule_type": j.schedule_type}
                   for j in s.scalars(select(Job).where(Job.state == "pending")
                                      .order_by(Job.id).limit(limit))]
        upcoming = s.scalars(
            select(RunTemplate).where(RunTemplate.active.is_(True),
                                      RunTemplate.next_schedule.is_not(None))
            .order_by(RunTemplate.next_schedule).limit(limit))
        # In the order the jobs will be due (a delay can put a later tick first).
        due = [{"runtemplate_id": rt.id, "name": rt.name, "next": iso(next_due(rt)),
                "tick": iso(rt.next_schedule)}
               for rt in sorted(upcoming, key=lambda rt: (next_due(rt), rt.id))]
    doc = {"queued": queued, "waiting": waiting, "next": due}

    def text() -> None:
        click.echo("queued jobs:")
        table([(q["job_id"], q["after"], q["runtemplate_id"], q["name"], q["schedule_type"])
               for q in queued], ["job", "not before", "tpl", "template", "type"])
        if waiting:
            click.echo("\nwaiting for the template's running job:")
            table([(w["job_id"], w["runtemplate_id"], w["name"]) for w in waiting],
                  ["job", "tpl", "template"])
        click.echo("\nnext scheduled runs:")
        table([(n["next"], n["runtemplate_id"], n["name"]) for n in due],
              ["due", "tpl", "template"])

    emit(doc, text)


def register(cli: click.Group) -> None:
    cli.add_command(job)
    cli.add_command(artifact)
    cli.add_command(queue)
