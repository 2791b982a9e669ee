"""The methods the daemon serves on its socket (documented in shared/PROTOCOL.md)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput, NotFound
from multiflexi.protocol import Params
from multiflexid.domain.credjson import env_type
from multiflexid.domain.schedule import Recurrence
from multiflexid.presenters import (
    app_dict,
    artifact_dict,
    company_dict,
    credential_dict,
    credential_type_dict,
)
from multiflexid.services import (
    apps,
    audit,
    companies,
    credentials,
    deadlines,
    jobs,
    runtemplates,
)
from multiflexid.store.orm import (
    Application,
    Artifact,
    Company,
    CredentialType,
    RunTemplate,
)

from .operations import Operations
from .rpc_actions import action_handlers
from .rpc_common import caller, field_named
from .rpc_jobs import job_handlers
from .rpc_manage import manage_handlers
from .rpc_server import Connection, Handler
from .status import signature

# Responses must fit a frame (1 MiB): content is paged below that (output: rpc_jobs.py).
MAX_ARTIFACT_BYTES = 512 * 1024



def _page(p: Params) -> tuple[int, int]:
    return p.opt_int("limit", 100, min=1, max=1000), p.opt_int("offset", 0, min=0)


def _only(query: Any, column: Any, visible: set[int] | None) -> Any:
    """``query`` limited to the companies the caller may see (None: all)."""
    return query if visible is None else query.where(column.in_(visible))


def build_handlers(ops: Operations) -> dict[str, Handler]:
    """The registry of methods; each validates its params where they come off the wire,
    checks the caller's role on the company concerned (lists carry only the companies it
    may see) and calls one read or one operation."""
    db = ops

    # --- daemon -------------------------------------------------------------------------

    async def daemon_status(conn: Connection, p: Params) -> Any:
        p.done()
        return await ops.status(caller(conn))

    # --- companies, applications ----------------------------------------------------------

    async def company_list(conn: Connection, p: Params) -> Any:
        limit, offset = _page(p)
        p.done()

        visible = conn.perms.visible()

        def q(s: Session) -> Any:
            query = _only(select(Company), Company.id, visible)
            rows = s.scalars(query.order_by(Company.id).limit(limit).offset(offset))
            total = s.scalar(select(func.count()).select_from(query.subquery()))
            return {"items": [company_dict(c) for c in rows], "total": total}

        return await db.read(q)

    async def company_get(conn: Connection, p: Params) -> Any:
        key = p.exactly_one("id", "slug")
        ref = p.int("id") if key == "id" else p.str("slug")
        p.done()

        def q(s: Session) -> Any:
            company = companies.get_company(s, ref)
            conn.perms.require("viewer", company.id, "company.get")
            return company_dict(company)

        return await db.read(q)

    async def app_list(conn: Connection, p: Params) -> Any:
        limit, offset = _page(p)
        p.done()

        def q(s: Session) -> Any:
            rows = s.scalars(select(Application).order_by(Application.id)
                             .limit(limit).offset(offset))
            total = s.scalar(select(func.count()).select_from(Application))
            return {"items": [app_dict(a) for a in rows], "total": total}

        return await db.read(q)

    async def app_get(conn: Connection, p: Params) -> Any:
        key = p.exactly_one("id", "uuid")
        ref = str(p.int("id")) if key == "id" else p.str("uuid")
        p.done()
        return await db.read(lambda s: app_dict(apps.get_app(s, ref, parts=True), parts=True))

    # --- run templates ------------------------------------------------------------------

    async def runtemplate_list(conn: Connection, p: Params) -> Any:
        company_id = p.opt_int("company_id")
        app_id = p.opt_int("app_id")
        active = p.opt_bool("active")
        late = p.opt_bool("late", False)
        tag = p.opt_str("tag")
        limit, offset = _page(p)
        p.done()
        if tag is not None:
            try:
                tag = runtemplates.check_tag(tag)
            except InvalidInput as exc:
                raise InvalidInput(f"params.tag: {exc.message.removeprefix('tags: ')}",
                                   {"field": "params.tag"}) from None

        visible = conn.perms.visible()

        def q(s: Session) -> Any:
            query = _only(select(RunTemplate), RunTemplate.company_id, visible)
            if tag is not None:
                query = query.where(runtemplates.tagged(tag))
            if company_id is not None:
                query = query.where(RunTemplate.company_id == company_id)
            if app_id is not None:
                query = query.where(RunTemplate.app_id == app_id)
            if active is not None:
                query = query.where(RunTemplate.active.is_(active))
            if late:  # decided per template by its current tick: page after filtering
                with_deadline = query.where(or_(RunTemplate.deadline_time.is_not(None),
                                                RunTemplate.deadline_after.is_not(None)))
                views = [v for v in runtemplates.runtemplate_views(
                    s, list(s.scalars(with_deadline.order_by(RunTemplate.id))))
                    if v["tick"] and (v["tick"]["late"] or v["tick"]["state"] ==
                                      "fulfilled_late")]
                return {"items": views[offset:offset + limit], "total": len(views)}
            total = s.scalar(select(func.count()).select_from(query.subquery()))
            rows = list(s.scalars(query.order_by(RunTemplate.id).limit(limit).offset(offset)))
            return {"items": runtemplates.runtemplate_views(s, rows), "total": total}

        return await db.read(q)

    async def runtemplate_get(conn: Connection, p: Params) -> Any:
        rt_id = p.int("id")
        p.done()

        def q(s: Session) -> Any:
            rt = runtemplates.get_runtemplate(s, rt_id)
            conn.perms.require("viewer", rt.company_id, "runtemplate.get")
            return runtemplates.runtemplate_view(s, rt)

        return await db.read(q)

    async def runtemplate_ticks(conn: Connection, p: Params) -> Any:
        rt_id = p.int("id")
        limit = p.opt_int("limit", 20, min=1, max=1000)
        p.done()

        def q(s: Session) -> Any:
            rt = runtemplates.get_runtemplate(s, rt_id)
            conn.perms.require("viewer", rt.company_id, "runtemplate.ticks")
            return {"id": rt.id, "items": deadlines.history(s, rt.id, datetime.now(UTC), limit)}

        return await db.read(q)

    async def runtemplate_env(conn: Connection, p: Params) -> Any:
        rt_id = p.int("id")
        env = p.str_map("env") if "env" in p else {}
        p.done()

        def q(s: Session) -> Any:
            rt = runtemplates.get_runtemplate(s, rt_id)
            conn.perms.require("viewer", rt.company_id, "runtemplate.env")
            resolved = runtemplates.resolve_env(s, rt, ops.box, overrides=env)
            return {"environment": resolved.explain(reveal=False), "missing": resolved.missing,
                    "errors": resolved.errors}

        return await db.read(q)

    async def runtemplate_preview(conn: Connection, p: Params) -> Any:
        rt_id = p.int("id")
        count = p.opt_int("count", 10, min=1, max=1000)
        start = p.opt_datetime("from") or datetime.now(UTC)
        p.done()
        rt = await db.read(lambda s: runtemplates.get_runtemplate(s, rt_id))
        conn.perms.require("viewer", rt.company_id, "runtemplate.preview")
        return runtemplates.preview(runtemplates.recurrence(rt), start, count)

    async def schedule_preview(conn: Connection, p: Params) -> Any:
        # The activation wizard's preview: no template exists yet, so the schedule comes
        # in the params; the same scheduler code computes it.
        interv = p.enum("interv", runtemplates.INTERVAL_CODES)
        cron = p.opt_str("cron")
        timezone = p.opt_str("timezone")
        delay = p.opt_int("delay", 0, min=0)
        count = p.opt_int("count", 10, min=1, max=1000)
        start = p.opt_datetime("from") or datetime.now(UTC)
        p.done()
        if interv == "c" and not (cron or "").strip():
            raise InvalidInput("params.cron: required when interv is c",
                               {"field": "params.cron"})
        return runtemplates.preview(Recurrence(interv, cron, timezone, delay), start, count)

    async def runtemplate_run(conn: Connection, p: Params) -> Any:
        rt_id = p.int("id")
        env = p.str_map("env") if "env" in p else {}
        secret = p.str_list("secret_keys")
        via = p.opt_enum("via", ("cli", "tui", "api")) or "api"
        p.done()
        return await ops.run_now(caller(conn), rt_id, env, secret=secret, via=via)

    async def runtemplate_set_active(conn: Connection, p: Params) -> Any:
        rt_id = p.int("id")
        active = p.bool("active")
        p.done()
        return await ops.set_active(caller(conn), rt_id, active)

    async def runtemplate_create(conn: Connection, p: Params) -> Any:
        app_id = p.int("app_id")
        company_id = p.int("company_id")
        values: dict[str, Any] = {"name": p.str("name")}
        for key in ("interv", "cron", "timezone", "executor"):
            value = p.opt_str(key)
            if value is not None:
                values[key] = value
        delay = p.opt_int("delay", min=0)
        if delay is not None:
            values["delay"] = delay
        deadline = p.opt_str("deadline")
        deadline_after = p.opt_str("deadline_after")
        if deadline is not None:
            values["deadline_time"] = deadline
        if deadline_after is not None:
            values["deadline_after"] = deadline_after
        values["active"] = p.opt_bool("active", True)
        config = p.str_map("config") if "config" in p else {}
        secret = p.str_list("secret_keys")
        creds = p.int_list("credentials") if "credentials" in p else []
        values["tags"] = p.str_list("tags")
        note = p.opt_str("note", allow_empty=True)
        if note is not None:
            values["note"] = note
        p.done()
        return await field_named(ops.create_template(
            caller(conn), app_id, company_id, config=config, secret=secret, credentials=creds,
            **values), _TEMPLATE_KEYS, "config")

    async def credential_list(conn: Connection, p: Params) -> Any:
        company_id = p.int("company_id")
        p.done()

        def q(s: Session) -> Any:
            company = companies.get_company(s, company_id)
            conn.perms.require("admin", company.id, "credential.list")
            codes = dict(s.execute(select(CredentialType.id, CredentialType.code))
                         .all())
            return {"items": [
                credential_dict(c, codes.get(c.credential_type_id, "?"), company.slug,
                                credentials.credential_values(c, ops.box, reveal=False))
                for c in credentials.list_credentials(s, company)
            ]}

        return await db.read(q)


    # --- editing (the TUI's forms): companies, credentials, templates, applications --------

    async def company_create(conn: Connection, p: Params) -> Any:
        values = _company_values(p, create=True)
        p.done()
        return await field_named(ops.create_company(caller(conn), values), _COMPANY_KEYS)

    async def company_update(conn: Connection, p: Params) -> Any:
        company_id = p.int("id")
        values = _company_values(p, create=False)
        p.done()
        return await field_named(ops.update_company(caller(conn), company_id, values),
                            _COMPANY_KEYS)

    async def credential_type_list(conn: Connection, p: Params) -> Any:
        p.done()
        def q(s: Session) -> Any:
            items = [credential_type_dict(t) for t in credentials.list_credential_types(s)]
            for item in items:  # the check each field's values get (int, bool, url...)
                for f in item["fields"]:
                    f["check"] = env_type(f["type"])
                    f["secret"] = bool(f["secret"] or f["type"] in ("password", "secret"))
            return {"items": items}

        return await db.read(q)

    async def credential_create(conn: Connection, p: Params) -> Any:
        company_id = p.int("company_id")
        type_code = p.str("type")
        name = p.str("name")
        values = p.str_map("values") if "values" in p else {}
        p.done()
        return await field_named(ops.create_credential(caller(conn), company_id, type_code, name,
                                                  values), ("name", "type"), "values")

    async def credential_update(conn: Connection, p: Params) -> Any:
        cred_id = p.int("id")
        name = p.opt_str("name")
        values = p.str_map("values") if "values" in p else {}
        p.done()
        return await field_named(ops.update_credential(caller(conn), cred_id, name, values),
                            ("name",), "values")

    async def runtemplate_update(conn: Connection, p: Params) -> Any:
        rt_id = p.int("id")
        values: dict[str, Any] = {}
        for key in ("name", "interv", "executor"):
            if key in p:
                values[key] = p.str(key)
        for key in ("cron", "timezone"):
            if key in p:
                values[key] = p.opt_str(key, allow_empty=True) or ""  # "" or null: none
        for key in ("delay", "timeout"):
            if key in p:
                values[key] = p.int(key, min=0)  # timeout 0: never stopped
        if "deadline" in p:
            values["deadline_time"] = p.opt_str("deadline", allow_empty=True) or ""
        if "deadline_after" in p:
            values["deadline_after"] = p.opt_str("deadline_after", allow_empty=True) or ""
        if "tags" in p:
            values["tags"] = p.str_list("tags")  # the whole new set
        if "note" in p:
            values["note"] = p.opt_str("note", allow_empty=True) or ""  # "": none
        config = p.str_map("config") if "config" in p else {}
        unset = p.str_list("unset")
        secret = p.str_list("secret_keys")
        creds = p.int_list("credentials") if "credentials" in p else None
        p.done()
        return await field_named(ops.update_template(
            caller(conn), rt_id, values, config=config, unset=unset, secret=secret,
            credentials_to=creds), _TEMPLATE_KEYS, "config")

    async def app_import(conn: Connection, p: Params) -> Any:
        content = p.str("content")
        source = p.opt_str("file") or "<input>"
        p.done()
        return await ops.import_app(caller(conn), content, source)

    # --- jobs -------------------------------------------------------------------------------

    async def job_get(conn: Connection, p: Params) -> Any:
        job_id = p.int("id")
        p.done()
        view = await db.read(jobs.job_view, job_id)
        conn.perms.require("viewer", view["company_id"], "job.get")
        return view

    async def job_cancel(conn: Connection, p: Params) -> Any:
        job_id = p.int("id")
        p.done()
        return await ops.cancel(caller(conn), job_id)

    async def artifact_get(conn: Connection, p: Params) -> Any:
        art_id = p.int("id")
        max_bytes = p.opt_int("max_bytes", MAX_ARTIFACT_BYTES, min=0, max=MAX_ARTIFACT_BYTES)
        p.done()

        def q(s: Session) -> Any:
            a = s.get(Artifact, art_id)
            if a is None:
                raise NotFound(f"no artifact with id {art_id}")
            conn.perms.require("viewer", jobs.get_job(s, a.job_id).company_id, "artifact.get")
            content = a.content or b""
            return {**artifact_dict(a),
                    "content_base64": base64.b64encode(content[:max_bytes]).decode(),
                    "truncated": len(content) > max_bytes}

        return await db.read(q)

    # --- the audit trail ----------------------------------------------------------------------

    async def audit_list(conn: Connection, p: Params) -> Any:
        company_id = p.opt_int("company_id")
        rt_id = p.opt_int("runtemplate_id")
        before = p.opt_int("before_id")
        limit = p.opt_int("limit", 100, min=1, max=1000)
        p.done()
        visible = conn.perms.visible()

        def q(s: Session) -> Any:
            company = company_id
            if rt_id is not None:
                company = runtemplates.get_runtemplate(s, rt_id).company_id
            if company is not None:
                conn.perms.require("viewer", company, "audit.list")
            rows = audit.list_entries(s, company_id=company, runtemplate_id=rt_id,
                                      limit=limit, before_id=before, companies=visible)
            return {"items": [audit.entry_dict(e) for e in rows],
                    "next_before_id": rows[-1].id if len(rows) == limit else None}

        return await db.read(q)

    # --- events -----------------------------------------------------------------------------

    async def events_subscribe(conn: Connection, p: Params) -> Any:
        want_jobs = p.opt_bool("jobs", False)
        want_rts = p.opt_bool("runtemplates", False)
        want_status = p.opt_bool("status", False)
        output_of = p.opt_int("job_output")
        p.done()
        if output_of is not None:  # only of a job of a company the caller may see
            job = await db.read(jobs.get_job, output_of)
            conn.perms.require("viewer", job.company_id, "events.subscribe job_output")
        conn.jobs = conn.jobs or want_jobs
        conn.runtemplates = conn.runtemplates or want_rts
        if output_of is not None:
            conn.output_of[output_of] = job.company_id
        if not want_status:
            return {"subscribed": conn.subscriptions()}
        # the status now, which later pushes are changes of
        doc = await ops.status(caller(conn))
        conn.status, conn.status_seen = True, signature(doc)
        return {"subscribed": conn.subscriptions(), "status": doc}

    async def events_unsubscribe(conn: Connection, p: Params) -> Any:
        output_of = p.opt_int("job_output")
        no_jobs = p.opt_bool("jobs", False)
        no_rts = p.opt_bool("runtemplates", False)
        no_status = p.opt_bool("status", False)
        everything = p.opt_bool("all", False)
        p.done()
        if everything:
            conn.jobs = conn.runtemplates = conn.status = False
            conn.output_of.clear()
        conn.jobs = conn.jobs and not no_jobs
        conn.runtemplates = conn.runtemplates and not no_rts
        conn.status = conn.status and not no_status
        if output_of is not None:
            conn.output_of.pop(output_of, None)
        return {"subscribed": conn.subscriptions()}

    return {
        **action_handlers(ops),
        **job_handlers(ops),
        **manage_handlers(ops),
        "daemon.status": daemon_status,
        "company.list": company_list,
        "company.get": company_get,
        "app.list": app_list,
        "app.get": app_get,
        "runtemplate.list": runtemplate_list,
        "runtemplate.get": runtemplate_get,
        "runtemplate.env": runtemplate_env,
        "runtemplate.ticks": runtemplate_ticks,
        "runtemplate.preview": runtemplate_preview,
        "schedule.preview": schedule_preview,
        "runtemplate.run": runtemplate_run,
        "runtemplate.set_active": runtemplate_set_active,
        "runtemplate.create": runtemplate_create,
        "credential.list": credential_list,
        "company.create": company_create,
        "company.update": company_update,
        "credential_type.list": credential_type_list,
        "credential.create": credential_create,
        "credential.update": credential_update,
        "runtemplate.update": runtemplate_update,
        "app.import": app_import,
        "job.get": job_get,
        "job.cancel": job_cancel,
        "artifact.get": artifact_get,
        "audit.list": audit_list,
        "events.subscribe": events_subscribe,
        "events.unsubscribe": events_unsubscribe,
    }


# --- the editing methods' helpers --------------------------------------------------------------

_COMPANY_KEYS = ("name", "slug", "ic", "dic", "email", "enabled", "zabbix_host",
                 "zabbix_server")
_TEMPLATE_KEYS = ("name", "interv", "cron", "timezone", "delay", "executor", "timeout",
                  "deadline", "deadline_after", "credentials", "tags", "note")


def _company_values(p: Params, *, create: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key in ("name", "slug"):
        if create or key in p:
            values[key] = p.str(key)
    for key in ("ic", "dic", "email", "zabbix_host", "zabbix_server"):
        if key in p:
            values[key] = p.opt_str(key, allow_empty=True) or ""  # "": cleared
    if "enabled" in p:
        values["enabled"] = p.bool("enabled")
    return values
