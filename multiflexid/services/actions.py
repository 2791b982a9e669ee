"""Actions on run templates and companies, and their runs in the ledger: add, list,
remove, test, retry — the same for the CLI (online or not) and the socket.

A secret key's value (``secret``, ``header``, ``url`` of Notify, ``token``) is stored as
``{"encrypted": <Fernet token of its JSON>}`` and shown masked; the ledger copies the
stored form, so it never holds a secret in clear either.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from multiflexi.errors import Conflict, InvalidInput, NotFound
from multiflexi.states import (
    ACTION_RUN_STATES,
    ACTION_STREAK_TRIGGERS,
    ACTION_THROTTLES,
    ACTION_TRIGGERS,
)
from multiflexid.actions import spec
from multiflexid.actions.chain import chain_target
from multiflexid.crypto import SecretBox
from multiflexid.presenters import iso
from multiflexid.store.audit import note
from multiflexid.store.orm import Action, ActionRun, Company, RunTemplate
from multiflexid.store.types import utcnow


def encode_config(module: str, config: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    ms = spec.module_spec(module)
    out: dict[str, Any] = {}
    for name, value in config.items():
        k = ms.key(name)
        out[name] = ({"encrypted": box.encrypt(json.dumps(value))} if k and k.secret
                     else value)
    return out


def decode_config(config: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    return {name: json.loads(box.decrypt(v["encrypted"]))
            if isinstance(v, dict) and "encrypted" in v else v
            for name, v in config.items()}


def count_encrypted(s: Session) -> int:
    """Actions holding encrypted values (the secret key must not be made anew then)."""
    return sum(1 for (cfg,) in s.execute(select(Action.config))
               if any(isinstance(v, dict) and "encrypted" in v for v in (cfg or {}).values()))


def parse_settings(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` items; a key given twice becomes a list (repeatable keys)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidInput(f"--set: {item!r} is not KEY=VALUE", {"field": "config"})
        if key in out:
            out[key] = [*out[key], value] if isinstance(out[key], list) else [out[key], value]
        else:
            out[key] = value
    return out


def _trigger_and_throttle(trigger: str, throttle: str | None) -> tuple[str, str]:
    if trigger not in ACTION_TRIGGERS:
        raise InvalidInput(f"trigger: {trigger!r} is not one of {', '.join(ACTION_TRIGGERS)}",
                           {"field": "trigger"})
    streaky = trigger in ACTION_STREAK_TRIGGERS
    if throttle is None:
        return trigger, "first" if streaky else "every"
    if throttle not in ACTION_THROTTLES:
        raise InvalidInput(f"throttle: {throttle!r} is not one of "
                           f"{', '.join(ACTION_THROTTLES)}", {"field": "throttle"})
    if throttle == "first" and not streaky:
        raise InvalidInput(f"throttle: 'first' is for {', '.join(ACTION_STREAK_TRIGGERS)}; "
                           f"{trigger} actions run every time", {"field": "throttle"})
    return trigger, throttle


def add_action(s: Session, box: SecretBox, *, module: str, trigger: str,
               throttle: str | None = None, values: dict[str, Any],
               runtemplate: RunTemplate | None = None, company: Company | None = None,
               note: str | None = None) -> Action:
    """A new action of a template or (defaults for all its templates) of a company; its
    configuration is checked first (an error names the field)."""
    assert (runtemplate is None) != (company is None)
    trigger, throttle = _trigger_and_throttle(trigger, throttle)
    config = spec.validate(module, values)
    company_id = runtemplate.company_id if runtemplate is not None else company.id  # type: ignore[union-attr]
    if module == "ChainRuntemplate":
        chain_target(s, company_id, int(config["rtid"]))
    action = Action(runtemplate_id=runtemplate.id if runtemplate else None,
                    company_id=company.id if company else None, trigger=trigger,
                    throttle=throttle, module=module, enabled=True, note=note,
                    config=encode_config(module, config, box))
    s.add(action)
    s.flush()
    return action


def get_action(s: Session, action_id: int, *, runtemplate: RunTemplate | None = None,
               company: Company | None = None) -> Action:
    action = s.get(Action, action_id)
    if action is None:
        raise NotFound(f"no action with id {action_id}", {"field": "action"})
    if runtemplate is not None and action.runtemplate_id != runtemplate.id:
        where = (f"of company {action.company_id} (see `company action list`)"
                 if action.company_id else f"of run template {action.runtemplate_id}")
        raise NotFound(f"action {action_id} is not an action of run template "
                       f"{runtemplate.id}; it is {where}", {"field": "action"})
    if company is not None and action.company_id != company.id:
        raise NotFound(f"action {action_id} is not a default action of company "
                       f"{company.slug}", {"field": "action"})
    return action


def actions_of(s: Session, *, runtemplate: RunTemplate | None = None,
               company: Company | None = None) -> list[Action]:
    """A template's actions and then its company's (when it inherits them), or a
    company's defaults."""
    if company is not None:
        return list(s.scalars(select(Action).where(Action.company_id == company.id)
                              .order_by(Action.id)))
    assert runtemplate is not None
    query = select(Action).where(Action.runtemplate_id == runtemplate.id)
    if runtemplate.inherit_actions:
        query = select(Action).where(or_(Action.runtemplate_id == runtemplate.id,
                                         Action.company_id == runtemplate.company_id))
    return list(s.scalars(query.order_by(Action.runtemplate_id.is_(None), Action.id)))


def remove_action(s: Session, action: Action) -> None:
    """Its runs stay in the ledger (a pending one is still delivered: it holds its
    configuration)."""
    s.delete(action)


def action_view(a: Action, box: SecretBox) -> dict[str, Any]:
    plain = decode_config(a.config or {}, box)
    return {
        "id": a.id, "runtemplate_id": a.runtemplate_id, "company_id": a.company_id,
        "scope": "runtemplate" if a.runtemplate_id is not None else "company",
        "trigger": a.trigger, "throttle": a.throttle, "module": a.module,
        "config": spec.masked(a.module, plain), "enabled": a.enabled, "note": a.note,
        "created_at": iso(a.created_at),
    }


# --- the ledger --------------------------------------------------------------------------------


def run_view(r: ActionRun) -> dict[str, Any]:
    return {
        "id": r.id, "action_id": r.action_id, "job_id": r.job_id, "tick_id": r.tick_id,
        "runtemplate_id": r.runtemplate_id, "company_id": r.company_id, "module": r.module,
        "trigger": r.trigger, "state": r.state, "attempts": r.attempts,
        "max_attempts": r.max_attempts, "next_at": iso(r.next_at) if r.state == "pending"
        else None, "node": r.node, "status_code": r.status_code, "result": r.result,
        "started_at": iso(r.started_at), "finished_at": iso(r.finished_at),
        "created_at": iso(r.created_at),
    }


def list_runs(s: Session, *, job_id: int | None = None, state: str | None = None,
              runtemplate_id: int | None = None, company_id: int | None = None,
              limit: int = 50, before_id: int | None = None,
              companies: set[int] | None = None) -> list[ActionRun]:
    """Newest first; ``companies``: only runs of these (those the caller may see), chosen
    in the query so that a page is full whatever else the ledger holds."""
    if state is not None and state not in ACTION_RUN_STATES:
        raise InvalidInput(f"state: {state!r} is not one of {' '.join(ACTION_RUN_STATES)}",
                           {"field": "state"})
    query = select(ActionRun).order_by(ActionRun.id.desc()).limit(max(1, min(limit, 10000)))
    for column, value in ((ActionRun.job_id, job_id), (ActionRun.state, state),
                          (ActionRun.runtemplate_id, runtemplate_id),
                          (ActionRun.company_id, company_id)):
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(ActionRun.id < before_id)
    if companies is not None:
        query = query.where(ActionRun.company_id.in_(companies))
    return list(s.scalars(query))


def failed_runs_count(s: Session, runtemplate_id: int) -> int:
    return s.scalar(select(func.count()).select_from(ActionRun).where(
        ActionRun.runtemplate_id == runtemplate_id,
        ActionRun.state.in_(("failed", "gave_up")))) or 0


def get_run(s: Session, run_id: int, *, companies: set[int] | None = None) -> ActionRun:
    """The run ``run_id``; ``companies``: only a run of these (those the caller may see) —
    any other is "not found" as a run that does not exist, so its state tells nothing."""
    run = s.get(ActionRun, run_id)
    if run is None or (companies is not None and run.company_id not in companies):
        raise NotFound(f"no action run with id {run_id}")
    return run


def retry_run(s: Session, run: ActionRun, now: datetime, by: str) -> ActionRun:
    """Deliver a failed or given-up run again (attempts start over, same idempotency key)."""
    run_id = run.id
    if run.state not in ("failed", "gave_up"):
        raise Conflict(f"action run {run_id} is {run.state}; only failed and gave_up runs "
                       "are retried")
    before = run.state
    run.state, run.attempts, run.next_at = "pending", 0, now
    run.result = f"retry requested by {by}; last: {run.result or '-'}"[:2000]
    run.finished_at = None
    run.updated_at = utcnow()
    s.flush()
    what = f"job {run.job_id}" if run.job_id is not None else f"tick {run.tick_id}"
    note(s, "action_run", run_id, run.company_id, "retry",
         f"action run {run_id} ({run.module} for {what}) due again",
         {"state": [before, "pending"]},
         {"MULTIFLEXI_ACTION": run.module}
         | ({"MULTIFLEXI_JOB_ID": run.job_id} if run.job_id is not None else {}),
         runtemplate_id=run.runtemplate_id)
    return run


def modules_view() -> list[dict[str, Any]]:
    return [m.describe() for m in spec.MODULES.values()]

