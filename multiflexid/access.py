"""Who a socket peer is and what it may do, per company.

The identity is the kernel's (SO_PEERCRED: uid, gid, pid; SO_PEERGROUPS: the peer's
supplementary groups at connect time), never what the client says. Root, the daemon's own
user and members of group ``multiflexi`` are admins of everything; anyone else has the
roles granted to their groups (``multiflexi.conf`` ``[[access]]`` and the database's
grants, see services/access.py), on one company or all.
"""

from __future__ import annotations

import grp
import os
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from multiflexi.access import ROLES, at_least, higher
from multiflexi.errors import Forbidden

ADMIN_GROUP = "multiflexi"
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux >= 4.13


def peer_groups(sock: socket.socket, user: str, gid: int) -> list[str]:
    """Names of the peer's groups: those its process holds (SO_PEERGROUPS), else those
    the group database gives its user."""
    gids: list[int] = []
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 4 * 1024)
        gids = list(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    except OSError:
        try:
            gids = os.getgrouplist(user, gid)
        except (KeyError, OSError):
            gids = []
    return _names({gid, *gids})


def listed_groups(user: str, gid: int) -> set[str]:
    """The groups the group database lists ``user`` as a member of now (besides ``gid``,
    the process's own group)."""
    try:
        gids = set(os.getgrouplist(user, gid)) - {gid}
    except (KeyError, OSError):
        return set()
    return set(_names(gids))


def _names(gids: Iterable[int]) -> list[str]:
    names = []
    for g in set(gids):
        try:
            names.append(grp.getgrgid(g).gr_name)
        except KeyError:
            continue
    return sorted(names)


@dataclass(frozen=True)
class Permissions:
    """A peer's roles: on every company (``everywhere``) and on single ones."""

    user: str
    everywhere: str | None = None
    companies: Mapping[int, str] = field(default_factory=dict)
    slugs: Mapping[int, str] = field(default_factory=dict)  # for messages

    @property
    def anything(self) -> bool:
        return self.everywhere is not None or bool(self.companies)

    def role(self, company_id: int | None) -> str | None:
        if company_id is None:
            return self.everywhere
        return higher(self.everywhere, self.companies.get(company_id))

    def may(self, role: str, company_id: int | None) -> bool:
        return at_least(self.role(company_id), role)

    def visible(self) -> set[int] | None:
        """The companies this peer may see; None: all of them."""
        return None if self.everywhere is not None else set(self.companies)

    def require(self, role: str, company_id: int | None, what: str) -> None:
        """Refuse ``what`` unless the peer has ``role`` on the company (None: on all)."""
        if self.may(role, company_id):
            return
        where = (f"company {self.slugs.get(company_id, company_id)}" if company_id is not None
                 else "every company")
        have = self.role(company_id)
        raise Forbidden(f"{what} needs role {role} on {where}; {self.user} has "
                        + (f"role {have} there" if have else "no role there"),
                        {"needs": role, "company_id": company_id, "has": have})

    def view(self) -> dict[str, object]:
        """For daemon.status: what the TUI may offer this user."""
        return {"everywhere": self.everywhere,
                "companies": {str(cid): role for cid, role in sorted(self.companies.items())}}


def admin_of_everything(uid: int, groups: Iterable[str]) -> bool:
    """Root, the daemon's own user and group multiflexi: known without the database (so
    they keep their access while it is out)."""
    return uid in (0, os.geteuid()) or ADMIN_GROUP in set(groups)


def resolve(user: str, uid: int, groups: Iterable[str],
            grants: Iterable[tuple[str, str, int | None]],
            slugs: Mapping[int, str] | None = None) -> Permissions:
    """``grants``: (group, role, company id or None for all). The daemon's own user, root and
    group multiflexi: admin everywhere."""
    groups = set(groups)
    if admin_of_everything(uid, groups):
        return Permissions(user, "admin", {}, dict(slugs or {}))
    everywhere: str | None = None
    companies: dict[int, str] = {}
    for group, role, company_id in grants:
        if group not in groups or role not in ROLES:
            continue
        if company_id is None:
            everywhere = higher(everywhere, role)
        else:
            companies[company_id] = higher(companies.get(company_id), role) or role
    return Permissions(user, everywhere, companies, dict(slugs or {}))


def refusal(user: str, uid: int) -> str:
    return (f"user {user} (uid {uid}) may not use multiflexid: add it to group "
            f"{ADMIN_GROUP} (sudo adduser {user} {ADMIN_GROUP}) or grant one of its groups "
            "a role (multiflexi-cli access grant --group G --role viewer [--company C]), "
            "then log in again")
