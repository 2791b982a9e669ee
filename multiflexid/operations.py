"""What can be done to a running daemon's objects, whoever asks: run now, cancel,
enable/disable, create a template, status.

The socket's handlers (rpc_methods.py) call these; they depend on this interface and on
the :class:`Control` the daemon implements, never on the daemon itself. Each operation
is one service function (``multiflexid.services``) in one write transaction — the same
function the CLI calls when the daemon is not running — plus what the running daemon
does about it (wake the dispatcher, push the change to subscribers).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.errors import Conflict, MultiFlexiError, NotFound
from multiflexid.access import Permissions, admin_of_everything, resolve
from multiflexid.crypto import SecretBox
from multiflexid.dbthread import DbThread
from multiflexid.presenters import app_dict, company_dict, job_dict
from multiflexid.services import access as access_svc
from multiflexid.services import (
    apps,
    bulk,
    clone,
    companies,
    company_env,
    credentials,
    jobs,
    runtemplates,
)
from multiflexid.store.audit import Actor, note, set_actor
from multiflexid.store.orm import Company, CredentialType
from multiflexid.store.transitions import JobTransitions, NewJob

T = TypeVar("T")
# The grants are read again when older than this (every connection's roles come from them).
GRANTS_TTL = 1.0  # seconds


class Control(Protocol):
    """What the operations need of the running daemon."""

    @property
    def stopping(self) -> bool: ...

    def work_arrived(self) -> None:
        """Queued work or changed templates: wake the dispatcher and the scheduler."""

    def cancel_here(self, job_id: int) -> bool:
        """Stop a job this node holds; False if it holds none of that id."""

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        """Hand an event to subscribers (its wire shape is built by the daemon)."""

    async def flush_output(self) -> None:
        """Write the output still buffered in memory."""

    async def status(self, user: str) -> dict[str, Any]: ...

    def log(self, message: str, fields: dict[str, Any]) -> None: ...

    def actions_due(self) -> None:
        """Action runs became due (a retry): wake the action worker."""


@dataclass(frozen=True)
class Caller:
    """Who asks: what they may do, and who the audit trail says made a change."""

    perms: Permissions
    actor: Actor

    @property
    def user(self) -> str:
        return self.actor.user


class Operations:
    def __init__(self, db: DbThread, box: SecretBox, transitions: JobTransitions,
                 control: Control, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 configured_access: tuple[tuple[str, str, str | None], ...] = ()) -> None:
        self.db = db
        self.box = box
        self.tx = transitions
        self.control = control
        self.clock = clock
        self.configured_access = configured_access
        self._grants: tuple[float, list[tuple[str, str, int | None]], dict[int, str]] = (
            -GRANTS_TTL, [], {})

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.db.read(fn, *args)

    async def write(self, caller: Caller, fn: Callable[[Session], T]) -> T:
        """``fn(session)`` in a write transaction, its changes recorded in the audit trail
        as the caller's."""
        def audited(s: Session) -> T:
            set_actor(s, caller.actor)
            try:
                result = fn(s)
                s.flush()  # recorded now, as this caller's (the batch's commit comes later)
                return result
            finally:
                set_actor(s, None)

        return await self.db.write(audited)

    async def permissions(self, peer: Any) -> Permissions:
        """The roles of a socket peer (``rpc_server.Peer``), from its groups and the grants
        (read at most once per GRANTS_TTL for all peers)."""
        if admin_of_everything(peer.uid, peer.groups):
            return Permissions(peer.user, "admin")
        at, grants, slugs = self._grants
        if time.monotonic() - at > GRANTS_TTL:
            def q(s: Session) -> tuple[list[tuple[str, str, int | None]], dict[int, str]]:
                return (access_svc.grant_tuples(s, self.configured_access),
                        dict(s.execute(select(Company.id, Company.slug)).all()))

            grants, slugs = await self.db.read(q)
            self._grants = (time.monotonic(), grants, slugs)
        return resolve(peer.user, peer.uid, peer.groups, grants, slugs)

    async def status(self, caller: Caller) -> dict[str, Any]:
        doc = await self.control.status(caller.user)
        doc["access"] = caller.perms.view()
        return doc

    async def flush_output(self) -> None:
        await self.control.flush_output()

    async def run_now(self, caller: Caller, rt_id: int, env: dict[str, str], *,
                      secret: list[str], via: str) -> dict[str, Any]:
        if self.control.stopping:
            raise Conflict("multiflexid is stopping; the job was not queued")

        def q(s: Session) -> tuple[dict[str, Any], dict[str, Any]]:
            rt = runtemplates.find_runtemplate(s, rt_id)
            caller.perms.require("operator", rt.company_id, "runtemplate.run")
            job, fields = runtemplates.run_now(
                s, self.tx, self.box, rt, env, secret=secret, launched_by=caller.user,
                schedule_type=f"adhoc-{via}", now=self.clock())
            return job_dict(job), fields

        if env:  # one-off values are checked against the template's fields, one by one
            view, fields = await self.write(caller, q)
        else:  # the calls a commit takes queue their jobs with one statement
            view, fields = await self.db.write_merged(self._runs_now, (caller, rt_id, via))
        self.control.log(f"job queued by {caller.user} (adhoc-{via})", fields)
        self.control.work_arrived()
        self.control.publish("job.changed", view)
        return view

    def _runs_now(self, s: Session, asked: list[tuple[Caller, int, str]]
                  ) -> list[tuple[dict[str, Any], dict[str, Any]] | MultiFlexiError]:
        """The "run now" calls without one-off values a commit takes: each caller's role
        checked on its template (a refusal fails that call alone), then all their jobs
        queued and audited, each as its caller's, in one statement."""
        refused: dict[int, MultiFlexiError] = {}
        new: list[NewJob] = []
        actors: list[Actor] = []
        for i, (caller, rt_id, via) in enumerate(asked):
            try:
                rt = runtemplates.find_runtemplate(s, rt_id)
                caller.perms.require("operator", rt.company_id, "runtemplate.run")
            except MultiFlexiError as exc:
                refused[i] = exc
                continue
            new.append(NewJob(rt, f"adhoc-{via}", caller.user))
            actors.append(caller.actor)
        made = iter(runtemplates.run_now_many(s, self.tx, new, self.clock(), actors))
        out: list[tuple[dict[str, Any], dict[str, Any]] | MultiFlexiError] = []
        for i in range(len(asked)):
            if i in refused:
                out.append(refused[i])
            else:
                job, fields = next(made)
                out.append((job_dict(job), fields))
        return out

    async def cancel(self, caller: Caller, job_id: int) -> dict[str, Any]:
        job = await self.db.read(jobs.job_view, job_id)
        caller.perms.require("operator", job["company_id"], "job.cancel")
        if self.control.cancel_here(job_id):
            await self.write(caller, lambda s: note(
                s, "job", job_id, job["company_id"], "cancel",
                f"job {job_id} cancel requested (it is stopped)",
                runtemplate_id=job["runtemplate_id"]))
            self.control.log(f"cancel requested by {caller.user}", {
                "MULTIFLEXI_JOB_ID": job_id, "MULTIFLEXI_RUNTEMPLATE_ID": job["runtemplate_id"],
                "MULTIFLEXI_COMPANY": job["company"], "MULTIFLEXI_APP": job["app"]})
            job["cancel"] = "requested"
            return job
        outcome = await self.write(
            caller, lambda s: jobs.cancel(s, self.tx, job_id, self.clock(), caller.user))
        view = await self.db.read(jobs.job_view, job_id)
        view["cancel"] = outcome
        self.control.publish("job.changed", view)
        return view

    async def set_active(self, caller: Caller, rt_id: int, active: bool) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            rt = runtemplates.get_runtemplate(s, rt_id)
            caller.perms.require("operator", rt.company_id, "runtemplate.set_active")
            runtemplates.update_runtemplate(s, rt, self.clock(), active=active)
            return runtemplates.runtemplate_view(s, rt)

        return await self._template_changed(await self.write(caller, q))

    async def create_template(self, caller: Caller, app_id: int, company_id: int, *,
                              config: dict[str, str], secret: list[str],
                              credentials: list[int], **values: Any) -> dict[str, Any]:
        caller.perms.require("admin", company_id, "runtemplate.create")

        def q(s: Session) -> dict[str, Any]:
            app = apps.get_app(s, app_id)
            company = companies.get_company(s, company_id)
            rt = runtemplates.create_runtemplate(
                s, app, company, self.box, self.clock(), config=config,
                credential_ids=credentials, secret=secret, **values)
            return runtemplates.runtemplate_view(s, runtemplates.get_runtemplate(s, rt.id))

        return await self._template_changed(await self.write(caller, q))

    async def _template_changed(self, view: dict[str, Any]) -> dict[str, Any]:
        self.control.publish("runtemplate.changed", view)
        self.control.work_arrived()
        return view

    # --- editing from the TUI: companies, credentials, templates, applications -------------
    # Each is the service the CLI calls, in one audited write transaction.

    async def create_company(self, caller: Caller, values: dict[str, Any]) -> dict[str, Any]:
        caller.perms.require("admin", None, "company.create")
        return await self.write(
            caller, lambda s: company_dict(companies.create_company(s, **values)))

    async def update_company(self, caller: Caller, company_id: int,
                             values: dict[str, Any]) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            company = companies.get_company(s, company_id)
            caller.perms.require("admin", company.id, "company.update")
            return company_dict(companies.update_company(s, company, **values))

        return await self.write(caller, q)

    async def create_credential(self, caller: Caller, company_id: int, type_code: str,
                                name: str, values: dict[str, str]) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            company = companies.get_company(s, company_id)
            caller.perms.require("admin", company.id, "credential.create")
            ctype = credentials.get_credential_type(s, type_code)
            cred = credentials.create_credential(s, company, ctype, name, values, self.box)
            return credentials.credential_view(s, cred, self.box, reveal=False)

        return await self.write(caller, q)

    async def update_credential(self, caller: Caller, cred_id: int, name: str | None,
                                values: dict[str, str]) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            cred = credentials.get_credential(s, cred_id)
            caller.perms.require("admin", cred.company_id, "credential.update")
            ctype = s.get(CredentialType, cred.credential_type_id)
            assert ctype is not None
            if name is not None:
                credentials.rename_credential(s, cred, name)
            credentials.set_values(cred, credentials.get_credential_type(s, ctype.code),
                                   values, self.box)
            s.flush()
            return credentials.credential_view(s, cred, self.box, reveal=False)

        return await self.write(caller, q)

    async def update_template(self, caller: Caller, rt_id: int, values: dict[str, Any], *,
                              config: dict[str, str], unset: list[str], secret: list[str],
                              credentials_to: list[int] | None) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            rt = runtemplates.get_runtemplate(s, rt_id)
            caller.perms.require("admin", rt.company_id, "runtemplate.update")
            runtemplates.update_runtemplate(s, rt, self.clock(), **values)
            if config or unset:
                definition = apps.to_definition(apps.get_app(s, rt.app_id, parts=True))
                runtemplates.set_config(rt, definition, config, unset, self.box, secret)
            if credentials_to is not None:
                have = {c.credential_id for c in rt.credentials}
                for cred_id in sorted(have - set(credentials_to)):
                    runtemplates.unassign_credential(rt, cred_id)
                for cred_id in [c for c in credentials_to if c not in have]:
                    runtemplates.assign_credential(s, rt, credentials.get_credential(s, cred_id))
            s.flush()
            return runtemplates.runtemplate_view(s, rt)

        return await self._template_changed(await self.write(caller, q))

    async def import_app(self, caller: Caller, content: str, source: str) -> dict[str, Any]:
        caller.perms.require("admin", None, "app.import")

        def q(s: Session) -> dict[str, Any]:
            app, created, warnings = apps.import_text(s, content, source)
            return {"app": app_dict(app), "created": created, "warnings": warnings}

        return await self.write(caller, q)

    # --- many companies: clones, bulk changes, a company's environment ----------------------

    async def clone_template(self, caller: Caller, rt_id: int, company: int | str | None,
                             name: str | None) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            rt = runtemplates.get_runtemplate(s, rt_id)
            target = _clone_target(s, caller, rt.company_id, company, "runtemplate.clone")
            made = clone.clone_runtemplate(s, rt, self.clock(), company=target, name=name)
            return runtemplates.runtemplate_view(s, made)

        return await self._template_changed(await self.write(caller, q))

    async def clone_credential(self, caller: Caller, cred_id: int, company: int | str | None,
                               name: str | None) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            cred = credentials.get_credential(s, cred_id)
            target = _clone_target(s, caller, cred.company_id, company, "credential.clone")
            made = clone.clone_credential(s, cred, company=target, name=name)
            return credentials.credential_view(s, made, self.box, reveal=False)

        return await self.write(caller, q)

    async def bulk(self, caller: Caller, op: str, selection: bulk.Selection,
                   values: bulk.BulkValues, *, dry_run: bool, via: str) -> dict[str, Any]:
        """A bulk change (see services/bulk.py) over the templates of the selection the
        caller may see; the caller needs the op's role on every company of them."""
        visible = caller.perms.visible()

        def q(s: Session) -> dict[str, Any]:
            rts = bulk.select_templates(s, selection, visible)
            for company_id in bulk.companies_of(rts):
                caller.perms.require(bulk.required_role(op), company_id, "runtemplate.bulk")
            result = bulk.apply(s, rts, op, values, box=self.box, tx=self.tx,
                                now=self.clock(), launched_by=caller.user,
                                schedule_type=f"adhoc-{via}", dry_run=dry_run)
            if result["applied"]:
                result["_views"] = [  # as every runtemplate.changed shows a template
                    runtemplates.runtemplate_view(s, rt)
                    for rt, c in zip(rts, result["changes"], strict=True)
                    if c["diff"] and op != "run"]
                result["_jobs"] = [job_dict(jobs.get_job(s, j)) for j in result.get("jobs", [])]
            return result

        if dry_run:
            result = await self.read(q)
        else:
            if op == "run" and self.control.stopping:
                raise Conflict("multiflexid is stopping; no job was queued")
            result = await self.write(caller, q)
        for view in result.pop("_views", []):
            self.control.publish("runtemplate.changed", view)
        for view in result.pop("_jobs", []):
            self.control.publish("job.changed", view)
        if result["applied"]:
            self.control.work_arrived()
        return result

    async def company_env(self, caller: Caller, what: str, company: int | str, *,
                          reveal: bool = False,
                          change: Callable[[Session, Company], None] | None = None
                          ) -> list[dict[str, Any]]:
        """A company's environment, secret values masked unless ``reveal`` (for its
        admins); after ``change`` (made in an audited write; admins only)."""
        def q(s: Session) -> list[dict[str, Any]]:
            target = _company_param(s, company)
            caller.perms.require("viewer" if change is None and not reveal else "admin",
                                 target.id, what + (" with reveal" if reveal else ""))
            if change is not None:
                change(s, target)
            return company_env.env_view(company_env.env_rows(s, target.id), self.box,
                                        reveal=reveal)

        if change is None:
            return await self.read(q)
        return await self.write(caller, q)


def _clone_target(s: Session, caller: Caller, source: int, company: int | str | None,
                  what: str) -> Company | None:
    """The company a clone is for (None: its own); the caller must be an admin of both."""
    caller.perms.require("admin", source, what)
    target = _company_param(s, company) if company is not None else None
    if target is not None:
        caller.perms.require("admin", target.id, what)
    return target


def _company_param(s: Session, ref: int | str) -> Company:
    """The company a ``company`` parameter names (not found: ``data.field`` says so)."""
    try:
        return companies.get_company(s, ref)
    except NotFound as exc:
        raise NotFound(exc.message, {"field": "params.company"}) from None
