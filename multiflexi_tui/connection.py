"""The TUI's one link to multiflexid: connect, subscribe, reconnect with backoff.

Everything the TUI shows comes through :class:`DaemonLink`: calls go over one
:class:`multiflexi.client.AsyncClient`, pushed notifications are re-published as Textual
signals (``job_changed``, ``runtemplate_changed``, ``job_output``) and connection changes
as ``state_changed``. When the daemon is not running, restarts or drops the connection, the
link says so and connects again with a growing pause; a refused peer (``Forbidden``) keeps
the daemon's reason on screen. No database code is ever imported here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from textual.signal import Signal

from multiflexi.access import at_least
from multiflexi.client import AsyncClient
from multiflexi.errors import DaemonUnavailable, Forbidden, MultiFlexiError

if TYPE_CHECKING:
    from textual.app import App
    from textual.dom import DOMNode

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "/run/multiflexi/multiflexid.sock"


@dataclass(frozen=True)
class LinkState:
    """What the connection bar shows."""

    connected: bool
    message: str
    status: dict[str, Any] = field(default_factory=dict)
    refused: bool = False
    # Increases at every successful connect: views reload when it changes.
    generation: int = 0


class HasLink(Protocol):
    link: DaemonLink


def link_of(node: DOMNode) -> DaemonLink:
    """The app's :class:`DaemonLink`, from any widget or screen."""
    app: Any = node.app
    return app.link


class DaemonLink:
    """Owns the :class:`AsyncClient`; re-creates it after every loss of connection."""

    def __init__(
        self, app: App[Any], path: str | Path, *, backoff_start: float = 0.25,
        backoff_max: float = 5.0, call_timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.call_timeout = call_timeout
        self.client: AsyncClient | None = None
        self.state = LinkState(False, f"connecting to multiflexid on {self.path}…")
        self.state_changed: Signal[LinkState] = Signal(app, "state_changed")
        self.job_changed: Signal[dict[str, Any]] = Signal(app, "job_changed")
        self.runtemplate_changed: Signal[dict[str, Any]] = Signal(app, "runtemplate_changed")
        self.job_output: Signal[dict[str, Any]] = Signal(app, "job_output")
        self._generation = 0
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []

    # --- what views use ---------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    def may(self, role: str, company_id: int | None = None) -> bool:
        """Whether this user has ``role`` on the company (None: on any company), as the
        daemon told at connect time; the daemon checks again on every call."""
        access = self.state.status.get("access")
        if not isinstance(access, dict):
            return True  # a daemon that does not say: let it decide
        everywhere = access.get("everywhere")
        companies = access.get("companies") or {}
        if company_id is None:
            have = [everywhere, *companies.values()]
        else:
            have = [everywhere, companies.get(str(company_id))]
        return any(at_least(r, role) for r in have if r)

    def may_everywhere(self, role: str) -> bool:
        """Whether this user has ``role`` on every company (what creating a company or
        importing an application needs)."""
        access = self.state.status.get("access")
        if not isinstance(access, dict):
            return True
        return at_least(access.get("everywhere"), role)

    async def call(self, method: str, /, **params: Any) -> Any:
        """Call a method; :class:`DaemonUnavailable` when not connected (views show it)."""
        return await self.call_with(method, params)

    async def call_with(self, method: str, params: dict[str, Any]) -> Any:
        client = self.client
        if client is None or not client.connected:
            raise DaemonUnavailable(self.state.message if not self.state.connected
                                    else "not connected to multiflexid")
        return await client.call_with(method, params)

    async def all_pages(self, method: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a paged list (``limit``/``offset``/``total``)."""
        items: list[dict[str, Any]] = []
        while True:
            reply = await self.call(method, limit=1000, offset=len(items), **params)
            page = reply.get("items") or []
            items.extend(page)
            if not page or len(items) >= int(reply.get("total") or 0):
                return items

    def add_listener(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """A raw notification listener (tests use it to wait for events)."""
        self._listeners.append(listener)

    # --- the connection loop (run as an app worker) -------------------------------------

    async def run(self) -> None:
        delay = self.backoff_start
        attempt = 0
        while True:
            attempt += 1
            try:
                client = await AsyncClient.connect(
                    self.path, on_notification=self._notified, timeout=self.call_timeout)
                try:
                    # subscribed first: every later change of the status is pushed
                    reply = await client.call("events.subscribe", jobs=True,
                                              runtemplates=True, status=True)
                    status = reply.get("status") or await client.call("daemon.status")
                except BaseException:
                    await client.close()
                    raise
            except Forbidden as exc:
                # Retrying will not help until the admin fixes the group; try seldom.
                self._set(LinkState(False, f"multiflexid refused this user: {exc.message}",
                                    refused=True))
                delay = self.backoff_max
            except MultiFlexiError as exc:
                self._set(LinkState(False, f"{exc.message} · reconnecting automatically"))
            except Exception as exc:  # whatever else: say it, and keep trying
                log.exception("cannot connect to multiflexid")
                self._set(LinkState(False, f"cannot talk to multiflexid on {self.path}: "
                                           f"{exc} · reconnecting automatically"))
                delay = self.backoff_max
            else:
                self.client = client
                self._generation += 1
                delay = self.backoff_start
                attempt = 0
                self._set(LinkState(True, _connected_text(status), status,
                                    generation=self._generation))
                await client.closed.wait()
                self.client = None
                reason = client.error.message if client.error else "connection lost"
                if isinstance(client.error, Forbidden):
                    self._set(LinkState(False, f"multiflexid refused this user: {reason}",
                                        refused=True))
                    delay = self.backoff_max
                else:
                    self._set(LinkState(False, f"{reason} · reconnecting automatically"))
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()

    # --- internals --------------------------------------------------------------------

    def _set(self, state: LinkState) -> None:
        if state == self.state:
            return
        self.state = state
        self.state_changed.publish(state)

    def _notified(self, method: str, params: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(method, params)
            except Exception:  # a test hook must not break the UI
                log.exception("notification listener failed")
        if method == "job.changed" and isinstance(params.get("job"), dict):
            self.job_changed.publish(params["job"])
        elif method == "runtemplate.changed" and isinstance(params.get("runtemplate"), dict):
            self.runtemplate_changed.publish(params["runtemplate"])
        elif method == "job.output":
            self.job_output.publish(params)
        elif method == "daemon.status" and self.state.connected:
            self._set(replace(self.state, message=_connected_text(params), status=params))


def _connected_text(status: dict[str, Any]) -> str:
    node = status.get("node") or "?"
    user = status.get("user") or "?"
    version = status.get("version") or "?"
    text = f"multiflexid {version} on {node} · {user}"
    if status.get("degraded"):
        return text + f" · DEGRADED: {status.get('status', '')}"
    if "running" in status:
        text += f" · {status['running']} running, {status.get('queued', 0)} queued"
    return text
