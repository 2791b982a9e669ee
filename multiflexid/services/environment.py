"""The one environment builder: what a job of a run template gets (see
``multiflexid.domain.config`` for the order of the layers).

:func:`load_context` reads a template with everything its jobs resolve to (app
definition, its company's environment, configuration and credentials, decrypted);
:func:`environment` resolves a job's environment from it. `runtemplate env`, "run now"'s
checks and the dispatcher's launch all go through these two, the dispatcher with the
context cached between jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

import multiflexi
from multiflexi.errors import NotFound
from multiflexid.crypto import SecretBox
from multiflexid.domain.appdef import AppDefinition
from multiflexid.domain.config import CredentialLayer, ResolvedEnv, resolve_environment
from multiflexid.executors.base import Limits
from multiflexid.store.db import transaction_memo
from multiflexid.store.orm import Application, Company, CredentialType, RunTemplate

from .apps import get_app, to_definition
from .company_env import company_layer
from .credentials import credential_layer, get_credential

_WITH_PARTS = (selectinload(RunTemplate.config), selectinload(RunTemplate.credentials),
               selectinload(RunTemplate.tags))


def get_runtemplate(s: Session, ref: int | str) -> RunTemplate:
    text = str(ref).strip()
    rt = None
    if text.isdigit():
        rt = s.scalar(select(RunTemplate).options(*_WITH_PARTS).where(RunTemplate.id == int(text)))
    if rt is None:
        raise NotFound(f"no run template with id {text!r}")
    return rt


def find_runtemplate(s: Session, rt_id: int) -> RunTemplate:
    """The template's row alone (its configuration and credentials load when used), from
    the session when this transaction read it already: many jobs of one template queued
    in one commit read it once."""
    known = transaction_memo(s, "runtemplates")
    rt = known.get(rt_id) or s.get(RunTemplate, rt_id)
    if rt is None:
        raise NotFound(f"no run template with id {str(rt_id)!r}")
    known[rt_id] = rt
    return rt


def template_config(rt: RunTemplate, box: SecretBox) -> tuple[dict[str, str], set[str]]:
    values = {c.key: box.decrypt(c.value) if c.encrypted else c.value for c in rt.config}
    return values, {c.key for c in rt.config if c.encrypted}


def credential_layers(s: Session, rt: RunTemplate, box: SecretBox) -> list[CredentialLayer]:
    layers = []
    for link in sorted(rt.credentials, key=lambda c: c.credential_id):
        cred = get_credential(s, link.credential_id)
        code = s.scalar(
            select(CredentialType.code).where(CredentialType.id == cred.credential_type_id)
        )
        layers.append(credential_layer(cred, code or "?", box))
    return layers


@dataclass(frozen=True)
class Identity:
    """Whose job it is: what the MULTIFLEXI_* variables tell the application."""

    rt_id: int
    rt_name: str
    app_id: int
    app_name: str
    app_uuid: str | None
    company_id: int
    company_slug: str
    company_name: str

    @classmethod
    def of(cls, rt: RunTemplate, app: Application, company: Company) -> Identity:
        return cls(rt.id, rt.name, app.id, app.name, app.uuid, company.id, company.slug,
                   company.name)


def injected_variables(
    who: Identity, *, executor: str, job_id: int | str | None = None,
    job_dir: str | None = None,
) -> dict[str, str]:
    """The ``MULTIFLEXI_*`` variables every job gets."""
    later = "(set at launch)"
    return {
        "MULTIFLEXI_JOB_ID": str(job_id) if job_id is not None else later,
        "MULTIFLEXI_RUNTEMPLATE_ID": str(who.rt_id),
        "MULTIFLEXI_RUNTEMPLATE_NAME": who.rt_name,
        "MULTIFLEXI_COMPANY_ID": str(who.company_id),
        "MULTIFLEXI_COMPANY_SLUG": who.company_slug,
        "MULTIFLEXI_COMPANY_CODE": who.company_slug,
        "MULTIFLEXI_COMPANY_NAME": who.company_name,
        "MULTIFLEXI_APPLICATION_ID": str(who.app_id),
        "MULTIFLEXI_APPLICATION_NAME": who.app_name,
        "MULTIFLEXI_APPLICATION_UUID": who.app_uuid or "",
        "MULTIFLEXI_EXECUTOR": executor,
        "MULTIFLEXI_TMP": job_dir or later,
        "MULTIFLEXI_VERSION": multiflexi.__version__,
    }


@dataclass(frozen=True)
class TemplateContext:
    """A run template with everything it resolves to, as of ``key``."""

    key: tuple[Any, ...]
    who: Identity
    app: AppDefinition
    app_enabled: bool
    company_enabled: bool
    rt_ociimage: str | None
    limits: Limits
    config: dict[str, str]
    config_secret: frozenset[str]
    credentials: tuple[CredentialLayer, ...]
    company_env: dict[str, str]
    company_secret: frozenset[str]


def load_context(s: Session, rt_id: int, box: SecretBox, key: tuple[Any, ...] = ()
                 ) -> TemplateContext:
    """Read a template's context (a launch-cache miss)."""
    rt = get_runtemplate(s, rt_id)
    app_row = get_app(s, rt.app_id, parts=True)
    company = s.get(Company, rt.company_id)
    assert company is not None
    config, secret = template_config(rt, box)
    company_env, company_secret = company_layer(s, company.id, box)
    return TemplateContext(
        key=key, who=Identity.of(rt, app_row, company), app=to_definition(app_row),
        app_enabled=app_row.enabled, company_enabled=company.enabled, rt_ociimage=rt.ociimage,
        limits=Limits(memory=rt.memory_limit, cpus=rt.cpu_limit, pids=rt.pids_limit,
                      network=rt.network),
        config=config, config_secret=frozenset(secret),
        credentials=tuple(credential_layers(s, rt, box)),
        company_env=company_env, company_secret=company_secret,
    )


def environment(
    ctx: TemplateContext, *, executor: str, overrides: Mapping[str, str] | None = None,
    override_secret: Iterable[str] = (), job_id: int | str | None = None,
    job_dir: str | None = None,
) -> ResolvedEnv:
    """A job's environment from its template's context and its one-off overrides."""
    return resolve_environment(
        ctx.app.env_fields,
        company=ctx.company_env,
        company_secret_keys=ctx.company_secret,
        credentials=ctx.credentials,
        template=ctx.config,
        template_secret_keys=ctx.config_secret,
        overrides=overrides,
        override_secret_keys=override_secret,
        injected=injected_variables(ctx.who, executor=executor, job_id=job_id,
                                    job_dir=job_dir),
        job_dir=job_dir,
    )
