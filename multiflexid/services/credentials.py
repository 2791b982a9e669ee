"""Credential types and per-company credentials (secret values encrypted at rest)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from multiflexi.errors import Conflict, InvalidInput, NotFound
from multiflexid.crypto import SecretBox
from multiflexid.domain.appdef import CredentialFieldDef, CredentialTypeDef
from multiflexid.domain.config import MASK, ConfigError, CredentialLayer, normalize, to_text
from multiflexid.domain.credjson import env_type
from multiflexid.presenters import credential_dict
from multiflexid.store.orm import (
    Company,
    Credential,
    CredentialType,
    CredentialTypeField,
    CredentialValue,
    RunTemplate,
    RunTemplateCredential,
)
from multiflexid.store.types import utcnow


def count_encrypted(s: Session) -> int:
    """How many encrypted values the database holds (credentials and template config)."""
    from sqlalchemy import func

    from multiflexid.store.orm import RunTemplateConfig

    return sum(
        s.scalar(select(func.count()).select_from(model).where(model.encrypted.is_(True))) or 0
        for model in (CredentialValue, RunTemplateConfig)
    )


def field_is_secret(f: CredentialTypeField) -> bool:
    return f.secret or f.type in ("password", "secret")


# --- credential types -------------------------------------------------------------------------


def upsert_credential_type(s: Session, d: CredentialTypeDef) -> tuple[CredentialType, bool]:
    ctype = s.scalar(
        select(CredentialType)
        .options(selectinload(CredentialType.fields))
        .where(CredentialType.code == d.code)
    )
    created = ctype is None
    if ctype is None:
        ctype = CredentialType(code=d.code, name=d.name)
        ctype.fields = []
        s.add(ctype)
    ctype.uuid, ctype.name, ctype.description = d.uuid, d.name, d.description
    ctype.version, ctype.localized = d.version, d.localized
    ctype.fields.clear()
    s.flush()
    ctype.fields.extend(
        CredentialTypeField(
            position=i, keyword=f.keyword, name=f.name, type=f.type,
            description=f.description, required=f.required, secret=f.is_secret,
            default=f.default, options=f.options, localized=f.localized,
        )
        for i, f in enumerate(d.fields)
    )
    s.flush()
    return ctype, created


def get_credential_type(s: Session, code: str) -> CredentialType:
    ctype = s.scalar(
        select(CredentialType)
        .options(selectinload(CredentialType.fields))
        .where(CredentialType.code == code)
    )
    if ctype is None:
        known = ", ".join(s.scalars(select(CredentialType.code).order_by(CredentialType.code)))
        raise NotFound(
            f"no credential type {code!r}" + (f" (known: {known})" if known else
                                              "; import one with `credential-type import-json`")
        )
    return ctype


def list_credential_types(s: Session) -> list[CredentialType]:
    return list(
        s.scalars(
            select(CredentialType)
            .options(selectinload(CredentialType.fields))
            .order_by(CredentialType.code)
        )
    )


def type_definition(ctype: CredentialType) -> CredentialTypeDef:
    return CredentialTypeDef(
        code=ctype.code, name=ctype.name, description=ctype.description, uuid=ctype.uuid,
        version=ctype.version, localized=dict(ctype.localized),
        fields=[
            CredentialFieldDef(
                keyword=f.keyword, name=f.name, type=f.type, description=f.description,
                required=f.required, default=f.default, options=f.options,
                localized=dict(f.localized),
            )
            for f in ctype.fields
        ],
    )


# --- credentials ----------------------------------------------------------------------------------


def get_credential(s: Session, cred_id: int | str) -> Credential:
    text = str(cred_id).strip()
    cred = None
    if text.isdigit():
        cred = s.scalar(
            select(Credential).options(selectinload(Credential.values))
            .where(Credential.id == int(text))
        )
    if cred is None:
        raise NotFound(f"no credential with id {text!r}")
    return cred


def list_credentials(s: Session, company: Company | None = None) -> list[Credential]:
    query = select(Credential).options(selectinload(Credential.values)).order_by(Credential.id)
    if company is not None:
        query = query.where(Credential.company_id == company.id)
    return list(s.scalars(query))


def _check_value(f: CredentialTypeField, value: str) -> str:
    try:
        return normalize(env_type(f.type), value, f.keyword, f.options)
    except ConfigError as exc:
        if field_is_secret(f):
            raise InvalidInput(f"{f.keyword}: value does not fit type {f.type}") from None
        raise InvalidInput(str(exc)) from None


def set_values(
    cred: Credential, ctype: CredentialType, values: dict[str, str], box: SecretBox
) -> None:
    """Set (or replace) values; unknown keys are refused with the list of known ones."""
    cred.updated_at = utcnow()  # the daemon's launch cache keys on it
    fields = {f.keyword: f for f in ctype.fields}
    for key, value in values.items():
        f = fields.get(key)
        if f is None:
            raise InvalidInput(
                f"{key}: not a field of credential type {ctype.code} "
                f"(fields: {', '.join(fields) or 'none'})"
            )
        value = _check_value(f, value)
        secret = field_is_secret(f)
        stored = box.encrypt(value) if secret else value
        row = next((v for v in cred.values if v.key == key), None)
        if row is None:
            cred.values.append(CredentialValue(key=key, value=stored, encrypted=secret))
        else:
            row.value, row.encrypted = stored, secret


def create_credential(
    s: Session, company: Company, ctype: CredentialType, name: str, values: dict[str, str],
    box: SecretBox,
) -> Credential:
    name = free_name(s, company, name)
    cred = Credential(company_id=company.id, credential_type_id=ctype.id, name=name)
    cred.values = []
    s.add(cred)
    defaults = {
        f.keyword: to_text(f.default) for f in ctype.fields
        if f.default is not None and f.keyword not in values
    }
    set_values(cred, ctype, {**defaults, **values}, box)
    missing = [
        f.keyword for f in ctype.fields
        if f.required and not any(v.key == f.keyword and v.value != "" for v in cred.values)
    ]
    if missing:
        raise InvalidInput(
            f"credential type {ctype.code} requires: {', '.join(missing)} "
            "(give them with --field KEY=VALUE)"
        )
    s.flush()
    return cred


def free_name(s: Session, company: Company, name: str, keep: int | None = None) -> str:
    """``name`` stripped, if no other credential of the company (but ``keep``) has it."""
    name = name.strip()
    if not name:
        raise InvalidInput("name: must not be empty")
    taken = s.scalar(
        select(Credential.id).where(Credential.company_id == company.id, Credential.name == name)
    )
    if taken is not None and taken != keep:
        raise Conflict(f"name: company {company.slug} already has a credential named {name!r}")
    return name


def rename_credential(s: Session, cred: Credential, name: str) -> None:
    company = s.get(Company, cred.company_id)
    assert company is not None
    cred.name = free_name(s, company, name, keep=cred.id)


def credential_view(s: Session, cred: Credential, box: SecretBox, reveal: bool
                    ) -> dict[str, Any]:
    """A credential as the CLI and the socket show it (secret values masked unless
    ``reveal``)."""
    code = s.scalar(select(CredentialType.code).where(
        CredentialType.id == cred.credential_type_id)) or "?"
    slug = s.scalar(select(Company.slug).where(Company.id == cred.company_id)) or "?"
    return credential_dict(cred, code, slug, credential_values(cred, box, reveal))


def credential_values(cred: Credential, box: SecretBox, reveal: bool) -> dict[str, str]:
    return {
        v.key: (box.decrypt(v.value) if reveal else MASK) if v.encrypted else v.value
        for v in cred.values
    }


def credential_layer(cred: Credential, ctype_code: str, box: SecretBox) -> CredentialLayer:
    return CredentialLayer(
        id=cred.id,
        name=cred.name,
        type_code=ctype_code,
        values=credential_values(cred, box, reveal=True),
        secret_keys=frozenset(v.key for v in cred.values if v.encrypted),
    )


def remove_credential(s: Session, cred: Credential) -> None:
    users = list(
        s.scalars(
            select(RunTemplate.id)
            .join(RunTemplateCredential, RunTemplateCredential.runtemplate_id == RunTemplate.id)
            .where(RunTemplateCredential.credential_id == cred.id)
        )
    )
    if users:
        raise Conflict(
            f"credential {cred.id} is assigned to run template(s) "
            f"{', '.join(map(str, users))}; unassign it first"
        )
    s.delete(cred)
