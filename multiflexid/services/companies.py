"""Companies (tenants)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from multiflexi.errors import Conflict, InvalidInput, NotFound
from multiflexid.domain.config import ConfigError, normalize
from multiflexid.store.orm import Company, Credential, Job, RunTemplate

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_slug(slug: str) -> str:
    slug = slug.strip()
    if not _SLUG.match(slug):
        raise InvalidInput(
            f"slug: {slug!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    if slug.isdigit():
        raise InvalidInput(f"slug: {slug!r} must not be all digits (it would look like an id)")
    return slug


def find_by_slug(s: Session, slug: str) -> Company | None:
    """The company with this slug, in whatever case it is written."""
    return s.scalar(select(Company).where(func.lower(Company.slug) == slug.strip().lower()))


def get_company(s: Session, ref: str | int) -> Company:
    text = str(ref).strip()
    company = s.get(Company, int(text)) if text.isdigit() else find_by_slug(s, text)
    if company is None:
        raise NotFound(f"no company with id or slug {text!r}")
    return company


def _refuse_taken(s: Session, slug: str, company: Company | None = None) -> None:
    other = find_by_slug(s, slug)
    if other is not None and other is not company:
        case = "" if other.slug == slug else " (slugs match regardless of case)"
        raise Conflict(f"slug: a company with slug {other.slug!r} already exists{case}")


def list_companies(s: Session) -> list[Company]:
    return list(s.scalars(select(Company).order_by(Company.id)))


def _apply(company: Company, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if value is None:
            continue
        if key == "name":
            if not str(value).strip():
                raise InvalidInput("name: must not be empty")
            value = str(value).strip()
        elif key == "slug":
            value = check_slug(str(value))
        elif key == "email" and value != "":
            try:
                value = normalize("email", str(value), "email")
            except ConfigError as exc:
                raise InvalidInput(str(exc)) from None
        elif key in ("zabbix_host", "zabbix_server"):
            value = _zabbix(key, str(value).strip())
        setattr(company, key, value)


_ZABBIX_HOST = re.compile(r"^[0-9A-Za-z_. -]{1,128}$")
_ZABBIX_SERVER = re.compile(r"^(\[[0-9A-Fa-f:]+\]|[0-9A-Za-z_.-]+)(:\d{1,5})?$")


def _zabbix(key: str, value: str) -> str | None:
    """A Zabbix host name (as Zabbix allows them) or a server as host[:port]; '' clears."""
    if value == "":
        return None
    if key == "zabbix_host" and not _ZABBIX_HOST.match(value):
        raise InvalidInput(f"zabbix_host: {value!r} is not a Zabbix host name (letters, "
                           "digits, spaces, '.', '_', '-'; at most 128)")
    if key == "zabbix_server":
        match = _ZABBIX_SERVER.match(value)
        if not match or (match[2] and not 0 < int(match[2][1:]) < 65536):
            raise InvalidInput(f"zabbix_server: {value!r} is not host[:port] "
                               "(e.g. zabbix.example:10051)")
    return value


def create_company(s: Session, **values: Any) -> Company:
    slug = check_slug(str(values.get("slug") or ""))
    _refuse_taken(s, slug)
    company = Company(name="", slug=slug, enabled=True)
    _apply(company, values)
    s.add(company)
    s.flush()
    return company


def update_company(s: Session, company: Company, **values: Any) -> Company:
    new_slug = values.get("slug")
    if new_slug is not None and new_slug != company.slug:
        _refuse_taken(s, check_slug(str(new_slug)), company)
    _apply(company, values)
    s.flush()
    return company


def remove_company(s: Session, company: Company) -> None:
    counts = {
        "run template(s)": s.scalar(
            select(func.count()).where(RunTemplate.company_id == company.id)
        ),
        "credential(s)": s.scalar(select(func.count()).where(Credential.company_id == company.id)),
        "job(s) in history": s.scalar(select(func.count()).where(Job.company_id == company.id)),
    }
    held = [f"{n} {what}" for what, n in counts.items() if n]
    if held:
        raise Conflict(
            f"company {company.slug} still has {', '.join(held)}; remove those first or "
            f"disable it with `multiflexi-cli company update --slug {company.slug} --disabled`"
        )
    s.delete(company)
