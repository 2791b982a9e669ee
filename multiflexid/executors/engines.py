"""The container engines MultiFlexi knows, by the executor name templates use."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from multiflexi.settings import Settings
from multiflexid.executors.base import Executor
from multiflexid.executors.container import ContainerExecutor

log = logging.getLogger(__name__)

# Executor name -> (module, class): imported only when used.
ENGINES = {
    "Podman": ("multiflexid.executors.podman", "PodmanExecutor"),
    "Docker": ("multiflexid.executors.docker", "DockerExecutor"),
}


def engine_class(name: str) -> type[ContainerExecutor]:
    module, cls = ENGINES[name]
    found: type[ContainerExecutor] = getattr(importlib.import_module(module), cls)
    return found


def container_executors(settings: Settings, **kwargs: Any) -> dict[str, Executor]:
    """The daemon's container executors (those whose client library is installed)."""
    executors: dict[str, Executor] = {}
    for name in ENGINES:
        try:
            cls = engine_class(name)
        except ImportError as exc:
            log.warning("%s executor unavailable: %s", name, exc)
            continue
        executors[name] = cls.from_settings(settings, **kwargs)
    return executors


def engine_status(settings: Settings, timeout: float = 3.0) -> dict[str, dict[str, Any]]:
    """Whether each engine's API answers at its configured URL (for `status`)."""

    async def one(name: str) -> dict[str, Any]:
        try:
            cls = engine_class(name)
        except ImportError as exc:
            return {"reachable": False, "problem": f"not installed: {exc}"}
        executor = cls.from_settings(settings, sweep=False, api_timeout=timeout)
        try:
            problem = await executor.check()
        finally:
            executor.close()
        return {"url": executor.base_url, "reachable": problem is None, "problem": problem}

    async def all_of() -> dict[str, dict[str, Any]]:
        names = list(ENGINES)
        found = await asyncio.gather(*(one(n) for n in names))
        return dict(zip(names, found, strict=True))

    return asyncio.run(all_of())
