"""Small asyncio helpers shared by the daemon's long-lived tasks."""

from __future__ import annotations

import asyncio


async def nap(wake: asyncio.Event, stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``, ending early when ``wake`` or ``stopping`` is set;
    ``wake`` is cleared afterwards. True if ``wake`` ended it (False: the time was up)."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waiters, timeout=max(0.0, seconds),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    woken = wake.is_set()
    wake.clear()
    return woken
