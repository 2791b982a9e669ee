"""``job``, ``artifact`` and ``queue`` commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from multiflexi.errors import NotFound
from multiflexid.presenters import artifact_dict, iso, job_dict, next_due
from multiflexid.services import jobs as svc
from multiflexid.services.companies import get_company
from multiflexid.store.orm import (
    JOB_STATES,
    Artifact,
    Company,
    Job,
    RunTemplate,
)

from . import live
from .base import AliasGroup, emit, fields, state, table, write_file
from .runtemplates import _run, _secret_option


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


@job.command("list")
@click.option("--company", "company_ref", help="Company id or slug.")
@click.option("--runtemplate", "rt_id", type=int, help="Run template id.")
@click.option("--state", "job_state", type=click.Choice(JOB_STATES), help="Only this state.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True,
              help="How many, newest first.")
@click.option("--before", "before_id", type=int, help="Only jobs older than this id (paging).")
def list_(company_ref: str | None, rt_id: int | None, job_state: str | None, limit: int,
          before_id: int | None) -> None:
    """List jobs, newest first."""
    with state().read() as s:
        company = get_company(s, company_ref) if company_ref else None
        jobs = svc.list_jobs(s, company=company, runtemplate_id=rt_id, state=job_state,
                             limit=limit, before_id=before_id)
        slugs = {i: slug for i, slug in s.execute(select(Company.id, Company.slug))}
        rows = [{**job_dict(j), "company": slugs.get(j.company_id)} for j in jobs]
    emit(rows, lambda: table(
        [(r["id"], r["state"], r["runtemplate_id"], r["runtemplate_name"], r["company"],
          r["schedule_type"], r["begin"] or r["schedule"], r["exitcode"], r["launched_by"])
         for r in rows],
        ["id", "state", "tpl", "template", "company", "type", "begin/due", "exit", "by"],
    ))


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
def output(job_id: int, stream: str | None, follow: bool) -> None:
    """Print a job's output as it was captured (stdout to stdout, stderr and MultiFlexi's
    own lines to stderr)."""
    if follow:
        client = live.connect("job output --follow")
        assert client is not None
        with client:
            final = live.follow(client, job_id, stream)
        live.report_end(final)
        raise click.exceptions.Exit(live.exit_status(final))
    with state().read() as s:
        svc.get_job(s, job_id)
        chunks: list[Any] = []
        after = -1
        while True:
            page = svc.read_output(s, job_id, after_seq=after, stream=stream)
            if not page:
                break
            chunks.extend(page)
            after = page[-1].seq
    if state().json:
        emit([{"seq": c.seq, "stream": c.stream, "at": iso(c.at),
               "data": c.data.decode("utf-8", "replace")} for c in chunks])
        return
    out = sys.stdout.buffer
    for c in chunks:
        if c.stream == "system":
            click.echo(c.data.decode("utf-8", "replace").rstrip("\n"), err=True)
        else:
            out.write(c.data)
    out.flush()


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
