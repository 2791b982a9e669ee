"""`action test`: perform an action once with a sample job and say what happened — how an
admin checks a webhook or a mail setup before relying on it. Modules that change state
(ChainRuntemplate, Reschedule, Stop) only check their target and say what they would do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from multiflexid.crypto import SecretBox
from multiflexid.store.orm import Action, Company, RunTemplate
from multiflexid.store.transitions import JobTransitions

from . import spec
from .perform import perform
from .performers import Context
from .summary import sample_summary

Run = Callable[[Callable[[Session], Any]], Awaitable[Any]]


def _sample(s: Session, action_id: int, box: SecretBox) -> tuple[str, dict[str, Any],
                                                                dict[str, Any]]:
    from multiflexid.services.actions import decode_config, get_action

    action: Action = get_action(s, action_id)
    rt = s.get(RunTemplate, action.runtemplate_id) if action.runtemplate_id else None
    company_id = rt.company_id if rt is not None else action.company_id
    company = s.get(Company, company_id)
    assert company is not None
    if rt is None:  # a company's default: show it on one of its templates
        rt = s.scalar(select(RunTemplate).where(RunTemplate.company_id == company.id)
                      .order_by(RunTemplate.id).limit(1))
    trigger = {"any": "failure", "recovery": "success"}.get(action.trigger, action.trigger)
    summary = sample_summary(s, company, rt, trigger=trigger,
                             action={"id": action.id, "module": action.module})
    return action.module, decode_config(action.config or {}, box), summary


async def try_action(action_id: int, *, read: Run, write: Run, tx: JobTransitions,
                     box: SecretBox) -> dict[str, Any]:
    module, config, summary = await read(lambda s: _sample(s, action_id, box))
    ctx = Context(summary=summary, config=config, idempotency_key=f"test-{action_id}",
                  secrets=spec.secret_values(module, config), write=write, dry_run=True)
    result = await perform(module, ctx, tx, box)
    ms = spec.MODULES.get(module)
    return {"action_id": action_id, "module": module, "ok": result.ok,
            "result": result.message, "status_code": result.status_code,
            "temporary": result.transient and not result.ok,
            "performed": bool(ms and ms.test_performs)}
