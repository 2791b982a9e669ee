"""Who may do what for which company: the roles, shared by the daemon, the CLI and the TUI.

A role is given to a Unix group, on one company or on all of them (``multiflexi.conf``'s
``[[access]]`` tables and ``multiflexi-cli access grant``). Root, the daemon's own user and
members of group ``multiflexi`` are admins of everything. Each role includes the ones
before it.
"""

from __future__ import annotations

ROLES = ("viewer", "operator", "admin")
MAY = {
    "viewer": "see the company's templates, jobs, output and artifacts",
    "operator": "also run now, cancel, enable and disable templates, retry deliveries",
    "admin": "also change configuration, credentials, actions and company settings",
}


def at_least(have: str | None, need: str) -> bool:
    """Whether role ``have`` includes role ``need``."""
    return have is not None and ROLES.index(have) >= ROLES.index(need)


def higher(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if ROLES.index(a) >= ROLES.index(b) else b
