"""Performing one action run, whoever asks (the daemon's worker, ``action test``)."""

from __future__ import annotations

import logging
from typing import Any

from multiflexid.crypto import SecretBox
from multiflexid.health import describe
from multiflexid.store.transitions import JobTransitions

from .chain import STATEFUL
from .ledger import Result
from .performers import PERFORMERS, Context

log = logging.getLogger("multiflexid.actions")


def lease_seconds(module: str, config: dict[str, Any]) -> float:
    """How long a node may take to perform a run before another node may take it over:
    the module's own timeout and a margin (Notify: Apprise's own timeouts)."""
    timeout = config.get("timeout")
    base = float(timeout) if isinstance(timeout, int) else 120.0
    return base + 60.0


async def perform(module: str, ctx: Context, tx: JobTransitions, box: SecretBox) -> Result:
    """The run's result; an unexpected error is a failed (temporary) attempt whose text
    never carries a secret."""
    try:
        if module in STATEFUL:
            return await STATEFUL[module](ctx, tx, box)
        performer = PERFORMERS.get(module)
        if performer is None:
            return Result(False, f"module {module!r} is not known to this MultiFlexi")
        if ctx.dry_run:
            ctx.dry_run = False  # the others really perform their test
        return await performer(ctx)
    except Exception as exc:  # a bug or a broken server: this run fails, nothing else
        from multiflexi.errors import MultiFlexiError

        if isinstance(exc, MultiFlexiError):
            return Result(False, ctx.mask(exc.message))
        log.warning("action %s failed unexpectedly: %s", module, ctx.mask(describe(exc)))
        return Result(False, ctx.mask(describe(exc)), transient=True)
