"""A company's environment: variables every job of the company gets, placed after the
application's defaults and before credentials (see ``multiflexid.domain.config``).

A value is secret — encrypted at rest, masked in listings, job records and output — when
it is set with ``secret``, when its key is named like a secret (``multiflexi.secrecy``),
when an application declares a field of that name secret, or when it was secret before
(a secret never turns plain by being set again: unset it first).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput, NotFound
from multiflexi.secrecy import looks_secret
from multiflexid.crypto import SecretBox
from multiflexid.domain.config import MASK
from multiflexid.store.orm import AppEnvField, Company, CompanyEnv
from multiflexid.store.types import utcnow

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
RESERVED = "MULTIFLEXI_"


def check_key(key: str) -> str:
    key = key.strip()
    if not _NAME.match(key):
        raise InvalidInput(f"{key or '(empty)'}: not a variable name (letters, digits and '_', "
                           "not starting with a digit)", {"field": "key"})
    if key.upper().startswith(RESERVED):
        raise InvalidInput(f"{key}: MULTIFLEXI_* variables are set by MultiFlexi itself",
                           {"field": "key"})
    return key


def env_rows(s: Session, company_id: int) -> list[CompanyEnv]:
    return list(s.scalars(select(CompanyEnv).where(CompanyEnv.company_id == company_id)
                          .order_by(CompanyEnv.key)))


def _declared_secret(s: Session, key: str) -> bool:
    """Whether an application declares a field ``key`` that is secret."""
    return s.scalar(select(AppEnvField.id).where(
        AppEnvField.key == key,
        or_(AppEnvField.secret.is_(True), AppEnvField.type == "password")).limit(1)) is not None


def set_env(s: Session, company: Company, key: str, value: str, box: SecretBox, *,
            secret: bool = False) -> CompanyEnv:
    """Set one variable of the company (see the module's docstring for which are secret)."""
    key = check_key(key)
    row = s.scalar(select(CompanyEnv).where(CompanyEnv.company_id == company.id,
                                            CompanyEnv.key == key))
    hidden = (secret or looks_secret(key) or (row is not None and row.encrypted)
              or _declared_secret(s, key))
    stored = box.encrypt(value) if hidden else value
    if row is None:
        row = CompanyEnv(company_id=company.id, key=key, value=stored, encrypted=hidden)
        s.add(row)
    elif row.encrypted != hidden or (box.decrypt(row.value) if row.encrypted
                                     else row.value) != value:
        row.value, row.encrypted = stored, hidden
    company.updated_at = utcnow()  # the daemon's launch cache keys on it
    s.flush()
    return row


def unset_env(s: Session, company: Company, key: str) -> None:
    row = s.scalar(select(CompanyEnv).where(CompanyEnv.company_id == company.id,
                                            CompanyEnv.key == key.strip()))
    if row is None:
        raise NotFound(f"{key}: not set in the environment of company {company.slug}",
                       {"field": "key"})
    s.delete(row)
    company.updated_at = utcnow()  # the daemon's launch cache keys on it
    s.flush()


def env_view(rows: list[CompanyEnv], box: SecretBox, reveal: bool = False
             ) -> list[dict[str, Any]]:
    """``[{key, value, secret}]``: secret values masked unless ``reveal``."""
    return [{"key": r.key,
             "value": (box.decrypt(r.value) if reveal else MASK) if r.encrypted else r.value,
             "secret": r.encrypted} for r in rows]


def company_layer(s: Session, company_id: int, box: SecretBox
                  ) -> tuple[dict[str, str], frozenset[str]]:
    """The company's variables in clear (for a job's environment) and the secret keys."""
    rows = env_rows(s, company_id)
    return ({r.key: box.decrypt(r.value) if r.encrypted else r.value for r in rows},
            frozenset(r.key for r in rows if r.encrypted))
