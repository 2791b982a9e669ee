"""What can be done to a running daemon's objects, whoever asks: run now, cancel,
enable/disable, create a template, status.

The socket's handlers (rpc_methods.py) call these; they depend on this interface and on
the :class:`Control` the daemon implements, never on the daemon itself. Each operation
is one service function (``multiflexid.services``) in one write transaction — the same
function the CLI calls when the daemon is not running — plus what the running daemon
does about it (wake the dispatcher, push the change to subscribers).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.orm import Session

from multiflexi.errors import Conflict
from multiflexid.crypto import SecretBox
from multiflexid.dbthread import DbThread
from multiflexid.presenters import job_dict
from multiflexid.services import apps, companies, jobs, runtemplates
from multiflexid.services.lifecycle import job_fields
from multiflexid.store.transitions import JobTransitions

T = TypeVar("T")


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


class Operations:
    def __init__(self, db: DbThread, box: SecretBox, transitions: JobTransitions,
                 control: Control, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
                 ) -> None:
        self.db = db
        self.box = box
        self.tx = transitions
        self.control = control
        self.clock = clock

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.db.read(fn, *args)

    async def status(self, user: str) -> dict[str, Any]:
        return await self.control.status(user)

    async def flush_output(self) -> None:
        await self.control.flush_output()

    async def run_now(self, rt_id: int, env: dict[str, str], *, secret: list[str],
                      launched_by: str, via: str) -> dict[str, Any]:
        if self.control.stopping:
            raise Conflict("multiflexid is stopping; the job was not queued")

        def q(s: Session) -> tuple[dict[str, Any], dict[str, Any]]:
            job = runtemplates.run_now(s, self.tx, self.box, rt_id, env, secret=secret,
                                       launched_by=launched_by, schedule_type=f"adhoc-{via}",
                                       now=self.clock())
            return job_dict(job), job_fields(s, job)

        view, fields = await self.db.write(q)
        self.control.log(f"job queued by {launched_by} (adhoc-{via})", fields)
        self.control.work_arrived()
        self.control.publish("job.changed", view)
        return view

    async def cancel(self, job_id: int, by: str) -> dict[str, Any]:
        if self.control.cancel_here(job_id):
            view = await self.db.read(jobs.job_view, job_id)
            self.control.log(f"cancel requested by {by}", {
                "MULTIFLEXI_JOB_ID": job_id, "MULTIFLEXI_RUNTEMPLATE_ID": view["runtemplate_id"],
                "MULTIFLEXI_COMPANY": view["company"], "MULTIFLEXI_APP": view["app"]})
            view["cancel"] = "requested"
            return view
        outcome = await self.db.write(jobs.cancel, self.tx, job_id, self.clock(), by)
        view = await self.db.read(jobs.job_view, job_id)
        view["cancel"] = outcome
        self.control.publish("job.changed", view)
        return view

    async def set_active(self, rt_id: int, active: bool) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            rt = runtemplates.get_runtemplate(s, rt_id)
            runtemplates.update_runtemplate(s, rt, self.clock(), active=active)
            return runtemplates.runtemplate_view(s, rt)

        return await self._template_changed(await self.db.write(q))

    async def create_template(self, app_id: int, company_id: int, *, config: dict[str, str],
                              secret: list[str], credentials: list[int], **values: Any
                              ) -> dict[str, Any]:
        def q(s: Session) -> dict[str, Any]:
            app = apps.get_app(s, app_id)
            company = companies.get_company(s, company_id)
            rt = runtemplates.create_runtemplate(
                s, app, company, self.box, self.clock(), config=config,
                credential_ids=credentials, secret=secret, **values)
            return runtemplates.runtemplate_view(s, runtemplates.get_runtemplate(s, rt.id))

        return await self._template_changed(await self.db.write(q))

    async def _template_changed(self, view: dict[str, Any]) -> dict[str, Any]:
        self.control.publish("runtemplate.changed", view)
        self.control.work_arrived()
        return view
