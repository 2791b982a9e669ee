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
                items = svc.actions_of(s, company=get_company(s, ref))
                return {"items": [svc.action_view(a, box) for a in items]}
            rt = get_runtemplate(s, ref)
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
            try:
                action = svc.add_action(s, box, module=module, trigger=trigger,
                                        throttle=throttle, values=config, note=note, **target)
            except InvalidInput as exc:
                raise _on_the_wire(exc, config) from None
            return svc.action_view(action, box)

        return await db.write(q)

    async def action_remove(conn: Connection, p: Params) -> Any:
        action_id = p.int("id")
        p.done()

        def q(s: Session) -> Any:
            svc.remove_action(s, svc.get_action(s, action_id))
            return {"id": action_id, "removed": True}

        return await db.write(q)

    async def action_test(conn: Connection, p: Params) -> Any:
        action_id = p.int("id")
        p.done()

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

        def q(s: Session) -> Any:
            rows = svc.list_runs(s, job_id=job_id, state=state, runtemplate_id=rt_id,
                                 company_id=company_id, limit=limit, before_id=before)
            items = [svc.run_view(r) for r in rows]
            return {"items": items,
                    "next_before_id": items[-1]["id"] if len(items) == limit else None}

        return await db.read(q)

    async def run_retry(conn: Connection, p: Params) -> Any:
        run_id = p.int("id")
        p.done()
        view = await db.write(lambda s: svc.run_view(
            svc.retry_run(s, run_id, datetime.now(UTC), conn.peer.user)))
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
