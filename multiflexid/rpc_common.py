"""What the modules of socket methods (rpc_methods, rpc_actions, rpc_jobs, rpc_manage) share:
who calls, and a refusal named as the parameter it is about."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from multiflexi.errors import Conflict, InvalidInput

from .operations import Caller
from .rpc_server import Connection

T = TypeVar("T")


def caller(conn: Connection) -> Caller:
    """The connection's peer as the operations know a caller (its roles, its audit name)."""
    return Caller(conn.perms, conn.peer.actor)


async def field_named(call: Awaitable[T], keys: tuple[str, ...], mapped: str | None = None) -> T:
    """A service's refusal named as the parameter it is about (``data.field``:
    ``params.slug``, ``params.values.PASSWORD``), so a form can point at the input; the
    services word their messages "<field>: <what is wrong>"."""
    try:
        return await call
    except (InvalidInput, Conflict) as exc:
        if exc.data.get("field"):
            raise
        head = exc.message.split(":", 1)[0].strip()
        if head == "deadline_time":
            head = "deadline"
        if head in keys:
            field = f"params.{head}"
        elif mapped and head and " " not in head:
            field = f"params.{mapped}.{head}"
        else:
            raise
        raise type(exc)(exc.message, {**exc.data, "field": field}) from None
