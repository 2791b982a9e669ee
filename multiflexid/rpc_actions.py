"""The socket methods of actions and their runs (documented in shared/PROTOCOL.md):
``action.modules``, ``action.list``, ``action.add``, ``action.remove``, ``action.test``,
``action_run.list``, ``action_run.retry``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput
from multiflexi.protocol import Params
from multiflexi.states import ACTION_RUN_STATES, ACTION_THROTTLES, ACTION_TRIGGERS
from multiflexid.actions.trial import try_action
from multiflexid.services import actions as svc
from multiflexid.services.companies import get_company
from multiflexid.services.runtemplates import get_runtemplate

from .operations import Operations
from .rpc_common import caller
from .rpc_server import Connection, Handler


def _on_the_wire(exc: InvalidInput, config: dict[str, Any]) -> InvalidInput:
    """A service's error named as the parameter it came in (``params.config.uri``)."""
    field = str(exc.data.get("field") or "")
    if not field or field.startswith("params."):
        return exc
    where = f"params.config.{field}" if field in config or field not in (
        "module", "trigger", "throttle", "rtid") else f"params.{field}"
    if field == "rtid":
        where = "params.config.rtid"
    message = exc.message[len(field):] if exc.message.startswith(field) else ": " + exc.message
    return InvalidInput(f"{where}{message}", {**exc.data, "field": where})


def _company_of(s: Session, action: Any) -> int:
    if action.company_id is not None:
        return int(action.company_id)
    return get_runtemplate(s, action.runtemplate_id).company_id


def action_handlers(ops: Operations) -> dict[str, Handler]:
    db, box = ops.db, ops.box

    async def modules(conn: Connection, p: Params) -> Any:
        p.done()
        return {"items": svc.modules_view()}

    async def action_list(conn: Connection, p: Params) -> Any:
        key = p.exactly_one("runtemplate_id", "company_id")
        ref = p.int(key)
        p.done()

        def q(s: Session) -> Any:
            if key == "company_id":
                company = get_company(s, ref)
                conn.perms.require("viewer", company.id, "action.list")
                items = svc.actions_of(s, company=company)
                return {"items": [svc.action_view(a, box) for a in items]}
            rt = get_runtemplate(s, ref)
            conn.perms.require("viewer", rt.company_id, "action.list")
            items = svc.actions_of(s, runtemplate=rt)
            return {"items": [svc.action_view(a, box) for a in items],
                    "inherit_actions": rt.inherit_actions}

        return await db.read(q)

    async def action_add(conn: Connection, p: Params) -> Any:
        key = p.exactly_one("runtemplate_id", "company_id")
        ref = p.int(key)
        module = p.str("module")
        trigger = p.enum("trigger", ACTION_TRIGGERS)
        throttle = p.opt_enum("throttle", ACTION_THROTTLES)
        config = p.str_or_list_map("config")
        note = p.opt_str("note")
        p.done()

        def q(s: Session) -> Any:
            target: dict[str, Any] = (
                {"company": get_company(s, ref)} if key == "company_id"
                else {"runtemplate": get_runtemplate(s, ref)})
            owner = target.get("company") or target["runtemplate"]
            conn.perms.require("admin", owner.id if key == "company_id" else owner.company_id,
                               "action.add")
            try:
                action = svc.add_action(s, box, module=module, trigger=trigger,
                                        throttle=throttle, values=config, note=note, **target)
            except InvalidInput as exc:
                raise _on_the_wire(exc, config) from None
            return svc.action_view(action, box)

        return await ops.write(caller(conn), q)

    async def action_remove(conn: Connection, p: Params) -> Any:
        action_id = p.int("id")
        p.done()

        def q(s: Session) -> Any:
            action = svc.get_action(s, action_id)
            conn.perms.require("admin", _company_of(s, action), "action.remove")
            svc.remove_action(s, action)
            return {"id": action_id, "removed": True}

        return await ops.write(caller(conn), q)

    async def action_test(conn: Connection, p: Params) -> Any:
        action_id = p.int("id")
        p.done()
        company_id = await db.read(lambda s: _company_of(s, svc.get_action(s, action_id)))
        conn.perms.require("admin", company_id, "action.test")

        async def read(fn: Callable[[Session], Any]) -> Any:
            return await db.read(fn)

        async def write(fn: Callable[[Session], Any]) -> Any:
            return await db.write(fn)

        return await try_action(action_id, read=read, write=write, tx=ops.tx, box=box)

    async def run_list(conn: Connection, p: Params) -> Any:
        job_id = p.opt_int("job_id")
        rt_id = p.opt_int("runtemplate_id")
        company_id = p.opt_int("company_id")
        state = p.opt_enum("state", ACTION_RUN_STATES)
        before = p.opt_int("before_id")
        limit = p.opt_int("limit", 50, min=1, max=1000)
        p.done()

        visible = conn.perms.visible()

        def q(s: Session) -> Any:
            rows = svc.list_runs(s, job_id=job_id, state=state, runtemplate_id=rt_id,
                                 company_id=company_id, limit=limit, before_id=before,
                                 companies=visible)
            items = [svc.run_view(r) for r in rows]
            return {"items": items,
                    "next_before_id": items[-1]["id"] if len(items) == limit else None}

        return await db.read(q)

    async def run_retry(conn: Connection, p: Params) -> Any:
        run_id = p.int("id")
        p.done()

        def q(s: Session) -> Any:  # the role first: nothing changes for a refused caller
            run = svc.get_run(s, run_id, companies=conn.perms.visible())
            conn.perms.require("operator", run.company_id, "action_run.retry")
            return svc.run_view(svc.retry_run(s, run, datetime.now(UTC), conn.peer.user))

        view = await ops.write(caller(conn), q)
        ops.control.actions_due()
        return view

    return {
        "action.modules": modules,
        "action.list": action_list,
        "action.add": action_add,
        "action.remove": action_remove,
        "action.test": action_test,
        "action_run.list": run_list,
        "action_run.retry": run_retry,
    }
