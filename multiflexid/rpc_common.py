"""What the modules of socket methods (rpc_methods, rpc_actions) share: who calls."""

from __future__ import annotations

from .operations import Caller
from .rpc_server import Connection


def caller(conn: Connection) -> Caller:
    """The connection's peer as the operations know a caller (its roles, its audit name)."""
    return Caller(conn.perms, conn.peer.actor)
