"""The socket methods that find jobs and read their output (documented in
shared/PROTOCOL.md): ``job.list`` (filtered, sorted, searched, keyset-paged on the server)
and ``job.output`` (forward, or from the end and back)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput
from multiflexi.protocol import Params
from multiflexi.states import JOB_STATES
from multiflexid.presenters import output_view
from multiflexid.services import joblist, jobs

from .operations import Operations
from .rpc_server import Connection, Handler

# Responses must fit a frame (1 MiB): output is paged below that.
MAX_OUTPUT_BYTES = 512 * 1024


def job_handlers(ops: Operations) -> dict[str, Handler]:
    db = ops

    async def job_list(conn: Connection, p: Params) -> Any:
        f = joblist.JobFilter(
            states=tuple(p.enum_list("state", JOB_STATES)),
            company_id=p.opt_int("company_id"), app_id=p.opt_int("app_id"),
            runtemplate_id=p.opt_int("runtemplate_id"),
            since=p.opt_datetime("since"), until=p.opt_datetime("until"),
            time_field=p.opt_enum("time_field", joblist.TIME_FIELDS) or "created",
            text=p.opt_str("text", max_len=joblist.MAX_TEXT),
            visible=conn.perms.visible())
        sort = p.opt_enum("sort", joblist.SORTS) or "id"
        desc = (p.opt_enum("order", ("desc", "asc")) or "desc") == "desc"
        before = p.opt_int("before_id", min=1)
        cursor = p.opt_str("cursor")
        limit = p.opt_int("limit", 50, min=1, max=1000)
        p.done()
        if before is not None:
            if cursor is not None or (sort, desc) != ("id", True):
                raise InvalidInput("params.before_id: only for pages by id, newest first "
                                   "(give cursor instead)", {"field": "params.before_id"})
            cursor = f"id~desc~~{before}"
        joblist.check(f, sort, desc, cursor)
        if f.text is not None:
            await ops.flush_output()  # what was printed a moment ago is found too

        def q(s: Session) -> Any:
            page = joblist.list_jobs(s, f, sort=sort, desc=desc, cursor=cursor, limit=limit)
            items = page.items()
            more_by_id = page.next_cursor is not None and (sort, desc) == ("id", True)
            return {"items": items, "next_cursor": page.next_cursor,
                    "next_before_id": items[-1]["id"] if more_by_id else None}

        return await db.read(q)

    async def job_output(conn: Connection, p: Params) -> Any:
        job_id = p.int("id")
        after = p.opt_int("after_seq", min=-1)
        before = p.opt_int("before_seq", min=0)
        tail = p.opt_bool("tail", False)
        limit = p.opt_int("limit", 1000, min=1, max=10000)
        max_bytes = p.opt_int("max_bytes", MAX_OUTPUT_BYTES, min=1, max=MAX_OUTPUT_BYTES)
        stream = p.opt_enum("stream", ("stdout", "stderr"))
        p.done()
        if sum((after is not None, before is not None, tail)) > 1:
            raise InvalidInput("params: give at most one of after_seq, before_seq, tail",
                               {"field": "params"})
        backwards = tail or before is not None
        await ops.flush_output()

        def q(s: Session) -> Any:
            job = jobs.get_job(s, job_id)
            conn.perms.require("viewer", job.company_id, "job.output")
            chunks = jobs.read_output(
                s, job_id, after_seq=-1 if after is None else after, stream=stream,
                limit=limit, from_end=backwards, before_seq=before)
            if backwards:  # the newest first, as many as fit
                chunks = chunks[::-1]
            views: list[dict[str, Any]] = []
            size = 0
            for c in chunks:  # stay well inside one frame; the client asks for the rest
                if views and size + len(c.data) > max_bytes:
                    break
                views.append(output_view(c.job_id, c.seq, c.stream, c.at, c.data))
                size += len(c.data)
            if backwards:
                views.reverse()
            first = views[0]["seq"] if views else before
            last = views[-1]["seq"] if views else (-1 if after is None else after)
            result = {
                "chunks": views,
                "last_seq": last,
                "done": jobs.is_final(job.state) and (
                    len(views) == len(chunks) < limit if not backwards else bool(tail)),
                "state": job.state,
            }
            if backwards:
                result["first_seq"] = first
                result["more_before"] = bool(views) and jobs.output_before(
                    s, job_id, views[0]["seq"], stream)
            return result

        return await db.read(q)

    return {"job.list": job_list, "job.output": job_output}
