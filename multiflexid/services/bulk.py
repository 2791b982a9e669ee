"""Bulk changes of run templates: one operation over a selection, all or nothing.

A selection (ids, application, company, tag, the state of each template's last job —
all that are given must hold) is planned first: every template's change is worked out
and checked (a configuration value against its field's type, a credential against the
template's company, a schedule against the template's zone) into a diff per template.
A dry run returns the plan; otherwise it is applied in the same transaction, so one bad
template changes none. The diff never holds a secret: a secret value is
``(secret changed)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from multiflexi.errors import InvalidInput, MultiFlexiError, NotFound
from multiflexi.states import JOB_STATES
from multiflexid.crypto import SecretBox
from multiflexid.domain.appdef import AppDefinition
from multiflexid.domain.config import ConfigError, is_secret_key, normalize
from multiflexid.domain.schedule import Recurrence, ScheduleError
from multiflexid.store.audit import note
from multiflexid.store.orm import Company, Credential, Job, RunTemplate
from multiflexid.store.transitions import JobTransitions, NewJob

from . import runtemplates
from .apps import get_app, to_definition
from .companies import get_company
from .credentials import get_credential
from .environment import _WITH_PARTS

OPS = ("set-config", "assign-credential", "enable", "disable", "run", "set-schedule")
# What an operator may do to the templates of a company; the rest needs an admin.
OPERATOR_OPS = ("enable", "disable", "run")
SECRET_CHANGED = "(secret changed)"
SECRET_SET = "(secret)"
T = TypeVar("T")


@dataclass
class Selection:
    """Which templates: every criterion given must hold (ids: any of them)."""

    ids: list[int] = field(default_factory=list)
    app: int | str | None = None
    company: int | str | None = None
    tag: str | None = None
    state: str | None = None

    def describe(self) -> str:
        parts = [f"id {', '.join(map(str, self.ids))}"] if self.ids else []
        parts += [f"{k} {v}" for k, v in (("app", self.app), ("company", self.company),
                                          ("tag", self.tag), ("state", self.state))
                  if v is not None]
        return ", ".join(parts)


@dataclass
class BulkValues:
    config: dict[str, str] = field(default_factory=dict)
    secret_keys: list[str] = field(default_factory=list)
    credential: int | None = None
    interv: str | None = None
    cron: str | None = None


def select_templates(s: Session, sel: Selection, visible: set[int] | None = None
                     ) -> list[RunTemplate]:
    """The templates of a selection (of the companies in ``visible``; None: all); an empty
    selection is an error, not nothing to do."""
    if not (sel.ids or sel.app is not None or sel.company is not None or sel.tag is not None
            or sel.state is not None):
        raise InvalidInput("selection: give ids, app, company, tag or state (a bulk change "
                           "of every template is not a thing to do by accident)",
                           {"field": "selection"})
    query = select(RunTemplate).options(*_WITH_PARTS).order_by(RunTemplate.id)
    if visible is not None:  # the others do not exist for this caller
        query = query.where(RunTemplate.company_id.in_(visible))
    if sel.ids:
        ids = select(RunTemplate.id).where(RunTemplate.id.in_(sel.ids))
        if visible is not None:
            ids = ids.where(RunTemplate.company_id.in_(visible))
        found = set(s.scalars(ids))
        missing = sorted(set(sel.ids) - found)
        if missing:
            raise NotFound(f"selection.ids: no run template with id "
                           f"{', '.join(map(str, missing))}; nothing was changed",
                           {"field": "selection.ids"})
        query = query.where(RunTemplate.id.in_(sel.ids))
    if sel.app is not None:
        app = _named("selection.app", lambda: get_app(s, str(sel.app)))
        query = query.where(RunTemplate.app_id == app.id)
    if sel.company is not None:
        company = _named("selection.company", lambda: get_company(s, sel.company or ""))
        query = query.where(RunTemplate.company_id == company.id)
    if sel.tag is not None:
        try:
            query = query.where(runtemplates.tagged(sel.tag))
        except InvalidInput:
            raise InvalidInput(f"selection.tag: {sel.tag!r} is not a tag",
                               {"field": "selection.tag"}) from None
    if sel.state is not None:
        if sel.state not in JOB_STATES:
            raise InvalidInput(f"selection.state: {sel.state!r} is not one of "
                               f"{' '.join(JOB_STATES)}", {"field": "selection.state"})
        last = select(func.max(Job.id)).group_by(Job.runtemplate_id)
        query = query.where(RunTemplate.id.in_(
            select(Job.runtemplate_id).where(Job.id.in_(last), Job.state == sel.state)))
    rows = list(s.scalars(query))
    if not rows:
        raise InvalidInput(f"selection: no run template matches ({sel.describe()}); "
                           "nothing was changed", {"field": "selection"})
    return rows


def _named(where: str, find: Callable[[], T]) -> T:
    """``find()``; its NotFound named as the parameter ``where``."""
    try:
        return find()
    except NotFound as exc:
        raise NotFound(f"{where}: {exc.message}", {"field": where}) from None


class _Plan:
    """Works out (and checks) each template's change; knows each app's fields once."""

    def __init__(self, s: Session, op: str, values: BulkValues, box: SecretBox) -> None:
        if op not in OPS:
            raise InvalidInput(f"op: {op!r} is not one of {', '.join(OPS)}", {"field": "op"})
        self.s, self.op, self.values, self.box = s, op, values, box
        self.apps: dict[int, AppDefinition] = {}
        self.slugs = dict(s.execute(select(Company.id, Company.slug)).all())
        self.credential: Credential | None = None
        if op == "set-config" and not values.config:
            raise InvalidInput("values.config: give at least one KEY=VALUE",
                               {"field": "values.config"})
        if op == "assign-credential":
            if values.credential is None:
                raise InvalidInput("values.credential: which credential (its id)",
                                   {"field": "values.credential"})
            cred_id = values.credential
            self.credential = _named("values.credential", lambda: get_credential(s, cred_id))
        if op == "set-schedule":
            if values.interv not in runtemplates.INTERVAL_CODES:
                raise InvalidInput(
                    f"values.interv: {values.interv!r} is not one of "
                    f"{' '.join(runtemplates.INTERVAL_CODES)}", {"field": "values.interv"})

    def app(self, rt: RunTemplate) -> AppDefinition:
        if rt.app_id not in self.apps:
            self.apps[rt.app_id] = to_definition(get_app(self.s, rt.app_id, parts=True))
        return self.apps[rt.app_id]

    def refuse(self, rt: RunTemplate, where: str, message: str) -> InvalidInput:
        return InvalidInput(
            f"run template {rt.id} {rt.name!r} ({self.slugs.get(rt.company_id)}): "
            f"{message}; nothing was changed",
            {"field": f"values.{where}", "runtemplate_id": rt.id})

    def diff(self, rt: RunTemplate) -> list[dict[str, Any]]:
        op, values = self.op, self.values
        if op == "set-config":
            return self._config(rt)
        if op == "assign-credential":
            cred = self.credential
            assert cred is not None
            if cred.company_id != rt.company_id:
                raise self.refuse(rt, "credential", f"credential: credential {cred.id} "
                                  f"{cred.name!r} belongs to company "
                                  f"{self.slugs.get(cred.company_id)}: refused")
            have = sorted(c.credential_id for c in rt.credentials)
            return [] if cred.id in have else [
                {"field": "credentials", "old": have, "new": sorted([*have, cred.id])}]
        if op in ("enable", "disable"):
            active = op == "enable"
            return [] if rt.active == active else [
                {"field": "active", "old": rt.active, "new": active}]
        if op == "run":
            return [{"field": "job", "old": None, "new": "queued"}]
        return self._schedule(rt, values)

    def _config(self, rt: RunTemplate) -> list[dict[str, Any]]:
        app, marked = self.app(rt), set(self.values.secret_keys)
        out = []
        for key, value in self.values.config.items():
            if not key or "=" in key:
                raise self.refuse(rt, f"config.{key}", f"config.{key}: not a valid key")
            fdef = app.env_field(key)
            row = next((c for c in rt.config if c.key == key), None)
            hidden = is_secret_key(key, fdef, marked) or bool(row and row.encrypted)
            if fdef is not None:
                try:
                    value = normalize(fdef.type, value, key, fdef.options)
                except ConfigError as exc:
                    raise self.refuse(rt, f"config.{key}", f"config.{key}: " + (
                        f"value does not fit type {fdef.type}" if hidden
                        else str(exc).removeprefix(f"{key}: "))) from None
            old = None if row is None else (
                self.box.decrypt(row.value) if row.encrypted else row.value)
            if old == value and row is not None and row.encrypted == hidden:
                continue
            out.append({"field": f"config.{key}", "old": SECRET_SET if row else None,
                        "new": SECRET_CHANGED} if hidden else
                       {"field": f"config.{key}", "old": old, "new": value})
        return out

    def _schedule(self, rt: RunTemplate, values: BulkValues) -> list[dict[str, Any]]:
        interv = values.interv or rt.interv
        cron = values.cron if values.cron is not None else rt.cron
        if interv == "c" and not (cron or "").strip():
            raise self.refuse(rt, "cron", "cron: interval c (custom) needs a cron "
                              "expression, e.g. '30 2 * * *'")
        try:
            Recurrence(interv, cron, rt.timezone, rt.delay).validate()
        except ScheduleError as exc:
            raise self.refuse(rt, "cron" if values.cron else "interv", str(exc)) from None
        return [{"field": k, "old": old, "new": new}
                for k, old, new in (("interv", rt.interv, interv), ("cron", rt.cron, cron))
                if old != new]


def plan(s: Session, rts: list[RunTemplate], op: str, values: BulkValues, box: SecretBox
         ) -> list[dict[str, Any]]:
    """``[{id, name, company, diff: [{field, old, new}]}]`` for every selected template (an
    empty diff: it would not change); an error names the first bad template and field."""
    p = _Plan(s, op, values, box)
    return [{"id": rt.id, "name": rt.name, "company": p.slugs.get(rt.company_id),
             "diff": p.diff(rt)} for rt in rts]


def apply(s: Session, rts: list[RunTemplate], op: str, values: BulkValues, *,
          box: SecretBox, tx: JobTransitions, now: datetime, launched_by: str,
          schedule_type: str, dry_run: bool = False) -> dict[str, Any]:
    """Plan the change and (unless ``dry_run``) make it in this transaction:
    ``{changes, applied, jobs?}``."""
    changes = plan(s, rts, op, values, box)
    result: dict[str, Any] = {"changes": changes, "applied": not dry_run}
    if dry_run:
        return result
    changed = [(rt, c) for rt, c in zip(rts, changes, strict=True) if c["diff"]]
    if op == "run":  # all the jobs in one statement
        made = runtemplates.run_now_many(
            s, tx, [NewJob(rt, schedule_type, launched_by) for rt, _change in changed], now)
        result["jobs"] = [job.id for job, _fields in made]
        return result
    for rt, change in changed:
        _make(s, rt, op, values, change, box, now)
    s.flush()
    for rt, _change in changed:
        note(s, "runtemplate", rt.id, rt.company_id, f"bulk {op}",
             f"run template {rt.id} {rt.name!r} changed by bulk {op} "
             f"({len(changed)} of {len(rts)} selected template(s) changed)", merge=True)
    return result


def _make(s: Session, rt: RunTemplate, op: str, values: BulkValues, change: dict[str, Any],
          box: SecretBox, now: datetime) -> None:
    try:
        if op == "set-config":
            keys = {d["field"].removeprefix("config.") for d in change["diff"]}
            app = to_definition(get_app(s, rt.app_id, parts=True))
            # a secret stays one (as the plan said)
            marked = {*values.secret_keys, *(c.key for c in rt.config if c.encrypted)}
            runtemplates.set_config(rt, app, {k: v for k, v in values.config.items()
                                              if k in keys}, [], box, marked)
        elif op == "assign-credential":
            assert values.credential is not None
            runtemplates.assign_credential(s, rt, get_credential(s, values.credential))
        elif op in ("enable", "disable"):
            runtemplates.update_runtemplate(s, rt, now, active=op == "enable")
        elif op == "set-schedule":
            runtemplates.update_runtemplate(s, rt, now, interv=values.interv,
                                            **({"cron": values.cron}
                                               if values.cron is not None else {}))
    except MultiFlexiError as exc:  # the plan checked it: say which template anyway
        raise InvalidInput(f"run template {rt.id} {rt.name!r}: {exc.message}; nothing was "
                           "changed", {**exc.data, "runtemplate_id": rt.id}) from None


def required_role(op: str) -> str:
    return "operator" if op in OPERATOR_OPS else "admin"


def companies_of(rts: Iterable[RunTemplate]) -> list[int]:
    return sorted({rt.company_id for rt in rts})


# --- how the CLI shows a plan ---------------------------------------------------------


def _shown(value: Any) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return str(value)


def diff_lines(result: dict[str, Any], op: str) -> list[str]:
    """The plan as text: a header per template, a line per changed field."""
    lines = []
    for c in result["changes"]:
        head = f"run template {c['id']} {c['name']!r} ({c['company']})"
        if not c["diff"]:
            lines.append(f"{head}: no change")
            continue
        lines.append(head)
        for d in c["diff"]:
            lines.append(f"  {d['field']}: {d['new']}" if d["new"] == SECRET_CHANGED
                         or op == "run" else
                         f"  {d['field']}: {_shown(d['old'])} -> {_shown(d['new'])}")
    changed = sum(1 for c in result["changes"] if c["diff"])
    total = len(result["changes"])
    if not result["applied"]:
        verb = "would get a job" if op == "run" else "would change"
        lines.append(f"dry run: {changed} of {total} run template(s) {verb}; nothing was "
                     "changed")
    elif op == "run":
        lines.append(f"queued {len(result.get('jobs', []))} job(s): "
                     + ", ".join(map(str, result.get("jobs", []))))
    else:
        lines.append(f"changed {changed} of {total} run template(s)")
    return lines
