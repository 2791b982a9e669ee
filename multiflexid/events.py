"""In-process publish/subscribe: job state changes and live output for socket clients."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]


class EventBus:
    """Events are delivered synchronously to listeners, which must not block
    (socket connections queue them and write in their own task)."""

    def __init__(self) -> None:
        self._listeners: set[Listener] = set()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, payload)
            except Exception:  # one broken client never stops the others
                log.exception("event listener failed")

    @property
    def has_listeners(self) -> bool:
        return bool(self._listeners)
