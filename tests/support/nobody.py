"""Socket calls as user nobody for async tests: each answer ``"ok"`` or ``"<error name>:
<message>"`` (tests/support/peers.py makes the calls; switching users needs root)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.support.peers import calls_as_nobody as _calls
from tests.support.peers import public_socket

__all__ = ["calls_as_nobody", "public_socket"]


async def calls_as_nobody(socket: Path, calls: list[tuple[str, dict[str, Any]]]
                          ) -> list[tuple[str, str]]:
    """Each call's answer: ``"ok"`` or ``"<error name>: <message>"``, in order."""
    answers = await asyncio.to_thread(_calls, socket, calls)
    return [(method, "ok" if "result" in answer else answer["error"])
            for (method, _params), answer in zip(calls, answers, strict=True)]
