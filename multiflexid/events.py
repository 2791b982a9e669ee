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
        self._listeners: dict[Listener, Callable[[str | None], bool]] = {}

    def subscribe(
        self, listener: Listener, interested: Callable[[str | None], bool] = lambda _k: True
    ) -> Callable[[], None]:
        """``interested(kind)`` says whether the listener wants events of that kind (None:
        of any kind) right now — a socket server whose clients subscribed to nothing does
        not — so nobody reads the database to build them in vain."""
        self._listeners[listener] = interested

        def unsubscribe() -> None:
            self._listeners.pop(listener, None)

        return unsubscribe

    def publish(self, kind: str, payload: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, payload)
            except Exception:  # one broken client never stops the others
                log.exception("event listener failed")

    @property
    def has_listeners(self) -> bool:
        return self.wants(None)

    def wants(self, kind: str | None) -> bool:
        return any(interested(kind) for interested in self._listeners.values())
