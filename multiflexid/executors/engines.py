"""The container engines MultiFlexi knows, by the executor name templates use."""

from __future__ import annotations

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

