"""Access grants: which Unix group has which role on which company (or on all).

Grants come from two places and add up: the database (``multiflexi-cli access grant``,
audited like every change) and ``multiflexi.conf``'s ``[[access]]`` tables (read-only
here: change the file).
"""

from __future__ import annotations

import grp
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexi.access import ROLES
from multiflexi.errors import InvalidInput, NotFound
from multiflexid.store.orm import AccessGrant, Company

from .companies import get_company


def grant(s: Session, group: str, role: str, company: Company | None, now: datetime,
          by: str) -> AccessGrant:
    """Give ``group`` ``role`` on ``company`` (None: every company); replaces the group's
    earlier role there."""
    group = group.strip()
    if not group:
        raise InvalidInput("group: a Unix group name is required")
    try:
        grp.getgrnam(group)
    except KeyError:
        raise InvalidInput(f"group: there is no Unix group {group!r} on this machine "
                           f"(create it first: sudo addgroup {group})") from None
    if role not in ROLES:
        raise InvalidInput(f"role: {role!r} is not one of {', '.join(ROLES)}")
    company_id = company.id if company is not None else None
    row = s.scalar(select(AccessGrant).where(AccessGrant.group_name == group,
                                             _company_is(company_id)))
    if row is None:
        row = AccessGrant(group_name=group, role=role, company_id=company_id,
                          created_at=now, created_by=by)
        s.add(row)
    else:
        row.role = role
    s.flush()
    return row


def revoke(s: Session, group: str, company: Company | None) -> AccessGrant:
    company_id = company.id if company is not None else None
    row = s.scalar(select(AccessGrant).where(AccessGrant.group_name == group.strip(),
                                             _company_is(company_id)))
    if row is None:
        where = f"company {company.slug}" if company is not None else "every company"
        raise NotFound(f"group {group!r} has no role on {where} in the database"
                       " (grants in multiflexi.conf are changed there)")
    s.delete(row)
    s.flush()
    return row


def _company_is(company_id: int | None) -> Any:
    return (AccessGrant.company_id.is_(None) if company_id is None
            else AccessGrant.company_id == company_id)


def all_grants(s: Session, configured: Iterable[tuple[str, str, str | None]]
               ) -> list[dict[str, Any]]:
    """Every grant, from the database and the config file, with where it comes from. A
    configured grant naming an unknown company is listed with ``company_id`` null."""
    slugs = dict(s.execute(select(Company.id, Company.slug)).all())
    out = [{"group": g.group_name, "role": g.role, "company_id": g.company_id,
            "company": slugs.get(g.company_id) if g.company_id is not None else None,
            "source": "database", "created_by": g.created_by}
           for g in s.scalars(select(AccessGrant).order_by(AccessGrant.group_name,
                                                            AccessGrant.id))]
    for group, role, slug in configured:
        company_id = None
        if slug is not None:
            try:
                company_id = get_company(s, slug).id
            except NotFound:
                company_id = None
        out.append({"group": group, "role": role, "company_id": company_id,
                    "company": slug, "source": "multiflexi.conf", "created_by": None})
    return out


def grant_tuples(s: Session, configured: Iterable[tuple[str, str, str | None]]
                 ) -> list[tuple[str, str, int | None]]:
    """(group, role, company id or None) of every grant that applies (a configured grant of
    a company that does not exist gives nothing)."""
    out: list[tuple[str, str, int | None]] = []
    for g in all_grants(s, configured):
        if g["company"] is not None and g["company_id"] is None:
            continue
        out.append((g["group"], g["role"], g["company_id"]))
    return out
