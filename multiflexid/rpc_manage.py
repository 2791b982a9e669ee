"""The socket methods for running many companies (documented in shared/PROTOCOL.md):
``runtemplate.clone``, ``credential.clone``, ``runtemplate.bulk``, ``company.env.list``,
``company.env.set``, ``company.env.unset``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from multiflexi.errors import Conflict, InvalidInput, NotFound
from multiflexi.protocol import Params
from multiflexi.states import JOB_STATES
from multiflexid.services import bulk, company_env
from multiflexid.services.runtemplates import INTERVAL_CODES
from multiflexid.store.orm import Company

from .operations import Operations
from .rpc_common import caller, field_named
from .rpc_server import Connection, Handler

T = TypeVar("T")


async def _params_named(call: Awaitable[T]) -> T:
    """A refusal whose ``data.field`` a service gave relative to the parameters
    (``values.config.KEY``, ``selection.ids``, ``key``) named as the parameter."""
    try:
        return await call
    except (InvalidInput, Conflict, NotFound) as exc:
        field = str(exc.data.get("field") or "")
        if not field or field.startswith("params."):
            raise
        raise type(exc)(exc.message, {**exc.data, "field": f"params.{field}"}) from None


def manage_handlers(ops: Operations) -> dict[str, Handler]:

    def clone(what: str, operation: Callable[..., Awaitable[Any]]) -> Handler:
        async def handler(conn: Connection, p: Params) -> Any:
            ref = p.int("id")
            company = p.opt_ref("company")
            name = p.opt_str("name")
            p.done()
            return await field_named(operation(caller(conn), ref, company, name),
                                     ("company", "name"))

        handler.__name__ = what
        return handler

    async def runtemplate_bulk(conn: Connection, p: Params) -> Any:
        op = p.enum("op", bulk.OPS)
        sel = p.opt_object("selection")
        selection = bulk.Selection(
            ids=sel.int_list("ids", min=1), app=sel.opt_ref("app"),
            company=sel.opt_ref("company"), tag=sel.opt_str("tag"),
            state=sel.opt_enum("state", JOB_STATES))
        sel.done()
        val = p.opt_object("values")
        values = bulk.BulkValues(
            config=val.str_map("config"), secret_keys=val.str_list("secret_keys"),
            credential=val.opt_int("credential", min=1),
            interv=val.opt_enum("interv", INTERVAL_CODES),
            cron=val.opt_str("cron", allow_empty=True))
        val.done()
        dry_run = p.bool("dry_run")
        via = p.opt_enum("via", ("cli", "tui", "api")) or "api"
        p.done()
        return await _params_named(ops.bulk(caller(conn), op, selection, values,
                                            dry_run=dry_run, via=via))

    async def env_list(conn: Connection, p: Params) -> Any:
        company = _company(p)
        reveal = p.opt_bool("reveal", False)
        p.done()
        return await ops.company_env(caller(conn), "company.env.list", company, reveal=reveal)

    async def env_set(conn: Connection, p: Params) -> Any:
        company = _company(p)
        key = p.str("key")
        value = p.str("value", allow_empty=True)
        secret = p.opt_bool("secret", False)
        p.done()

        def change(s: Session, target: Company) -> None:
            company_env.set_env(s, target, key, value, ops.box, secret=secret)

        return await _params_named(ops.company_env(caller(conn), "company.env.set", company,
                                                   change=change))

    async def env_unset(conn: Connection, p: Params) -> Any:
        company = _company(p)
        key = p.str("key")
        p.done()
        return await _params_named(ops.company_env(
            caller(conn), "company.env.unset", company,
            change=lambda s, target: company_env.unset_env(s, target, key)))

    return {
        "runtemplate.clone": clone("runtemplate_clone", ops.clone_template),
        "credential.clone": clone("credential_clone", ops.clone_credential),
        "runtemplate.bulk": runtemplate_bulk,
        "company.env.list": env_list,
        "company.env.set": env_set,
        "company.env.unset": env_unset,
    }


def _company(p: Params) -> int | str:
    company = p.opt_ref("company")
    if company is None:
        raise InvalidInput("params.company: required (a company id or slug)",
                           {"field": "params.company"})
    return company
