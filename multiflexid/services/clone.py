"""Clones of run templates and credentials, within a company or into another one.

A cloned template is created **disabled** (a copy of an active template must not run
before someone has looked at it), with its configuration, tags, note, settings and its
own actions. Secret values are copied as they are stored — encrypted — never decrypted on
the way. Into another company, its credentials are re-pointed to the target company's
credential of the same type (the one of the same name when there are several), and the
clone is refused, naming the type, when there is none: a template never gets another
company's credential.
"""

from __future__ import annotations

import copy
from datetime import datetime

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from multiflexi.errors import Conflict, MultiFlexiError
from multiflexid.actions.chain import chain_target
from multiflexid.store.audit import note
from multiflexid.store.deadlines import first_tracked_tick
from multiflexid.store.orm import (
    Action,
    Company,
    Credential,
    CredentialType,
    CredentialValue,
    RunTemplate,
    RunTemplateConfig,
    RunTemplateCredential,
    RunTemplateTag,
)

from .credentials import free_name, get_credential
from .runtemplates import reschedule

# What a clone does not take over: who it is, whose, its state and its history.
_NOT_COPIED = {
    "id", "company_id", "name", "active", "inactive_reason", "next_schedule",
    "last_schedule", "successful_jobs_count", "failed_jobs_count", "last_success_at",
    "deadline_next_tick", "created_at", "updated_at",
}


def _copy_name(name: str | None, original: str, same_company: bool) -> str:
    if name is not None and name.strip():
        return name.strip()
    return f"{original} (copy)" if same_company else original


def _counterpart(s: Session, cred: Credential, target: Company) -> int:
    """The target company's credential standing in for ``cred``: of the same type, the
    one of the same name when there are several."""
    code = s.scalar(select(CredentialType.code).where(
        CredentialType.id == cred.credential_type_id)) or "?"
    candidates = list(s.scalars(select(Credential).where(
        Credential.company_id == target.id,
        Credential.credential_type_id == cred.credential_type_id).order_by(Credential.id)))
    same_name = [c for c in candidates if c.name == cred.name]
    if len(candidates) == 1 or same_name:
        return (same_name or candidates)[0].id
    if not candidates:
        raise Conflict(
            f"company: {target.slug} has no credential of type {code} (the template uses "
            f"credential {cred.id} {cred.name!r}); create one, or copy it with "
            f"`credential clone --id {cred.id} --company {target.slug}`")
    names = ", ".join(f"{c.id} {c.name!r}" for c in candidates)
    raise Conflict(
        f"company: {target.slug} has {len(candidates)} credentials of type {code} ({names}) "
        f"and none named {cred.name!r}: which one stands in for credential {cred.id} is "
        "not clear; rename one of them to that name, or clone within the company")


def clone_runtemplate(s: Session, rt: RunTemplate, now: datetime, *,
                      company: Company | None = None, name: str | None = None
                      ) -> RunTemplate:
    """A disabled copy of ``rt`` for ``company`` (default: its own), named ``name``
    (default: the same name in another company, "<name> (copy)" in its own)."""
    source = s.get(Company, rt.company_id)
    assert source is not None
    target = company or source
    same = target.id == source.id
    creds = [link.credential_id for link in sorted(rt.credentials,
                                                   key=lambda c: c.credential_id)]
    if not same:
        creds = [_counterpart(s, get_credential(s, cid), target) for cid in creds]
    columns = {a.key: getattr(rt, a.key) for a in inspect(RunTemplate).column_attrs
               if a.key not in _NOT_COPIED}
    clone = RunTemplate(**copy.deepcopy(columns), company_id=target.id,
                        name=_copy_name(name, rt.name, same), active=False,
                        successful_jobs_count=0, failed_jobs_count=0)
    clone.config = [RunTemplateConfig(key=c.key, value=c.value, encrypted=c.encrypted)
                    for c in rt.config]
    clone.credentials = [RunTemplateCredential(credential_id=c) for c in dict.fromkeys(creds)]
    clone.tags = [RunTemplateTag(tag=t.tag) for t in rt.tags]
    reschedule(clone, now)
    clone.deadline_next_tick = first_tracked_tick(clone, now)
    s.add(clone)
    s.flush()
    for action in s.scalars(select(Action).where(Action.runtemplate_id == rt.id)
                            .order_by(Action.id)):
        if action.module == "ChainRuntemplate" and not same:
            try:
                chain_target(s, target.id, int(action.config.get("rtid", 0)))
            except MultiFlexiError:
                raise Conflict(
                    f"company: action {action.id} of run template {rt.id} chains to run "
                    f"template {action.config.get('rtid')} of company {source.slug}, and a "
                    f"chain stays within its company; remove the action, or clone within "
                    "the company") from None
        s.add(Action(runtemplate_id=clone.id, trigger=action.trigger,
                     throttle=action.throttle, module=action.module,
                     config=copy.deepcopy(action.config), enabled=action.enabled,
                     note=action.note))
    s.flush()
    where = source.slug if same else f"{source.slug} -> {target.slug}"
    note(s, "runtemplate", clone.id, target.id, "cloned",
         f"run template {clone.id} {clone.name!r} cloned from run template {rt.id} "
         f"{rt.name!r} ({where}), created disabled",
         {"cloned_from": [None, rt.id]}, merge=True)
    return clone


def clone_credential(s: Session, cred: Credential, *, company: Company | None = None,
                     name: str | None = None) -> Credential:
    """A copy of ``cred`` for ``company`` (default: its own), its values copied as stored
    (secret ones stay encrypted)."""
    source = s.get(Company, cred.company_id)
    assert source is not None
    target = company or source
    same = target.id == source.id
    clone = Credential(company_id=target.id, credential_type_id=cred.credential_type_id,
                       name=free_name(s, target, _copy_name(name, cred.name, same)))
    clone.values = [CredentialValue(key=v.key, value=v.value, encrypted=v.encrypted)
                    for v in cred.values]
    s.add(clone)
    s.flush()
    where = source.slug if same else f"{source.slug} -> {target.slug}"
    note(s, "credential", clone.id, target.id, "cloned",
         f"credential {clone.id} {clone.name!r} cloned from credential {cred.id} "
         f"{cred.name!r} ({where})", {"cloned_from": [None, cred.id]}, merge=True)
    return clone
