"""Fixtures of the TUI tests: a SQLite installation in a short temporary directory (Unix
socket paths are limited to 107 bytes), its Core, seeded data, and the real daemon."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest

from multiflexi.settings import load_settings
from multiflexi_tui import format as fmt
from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, running_daemon
from tests.tui.support import seed, sqlite_env


@pytest.fixture
def tui_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mft-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def tui_env(tui_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    env = sqlite_env(tui_dir)
    for key, value in env.vars().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(fmt, "LOCAL_ZONE", UTC)  # times shown the same on every machine
    return env


@pytest.fixture
def tui_core(tui_env: Env) -> Iterator[Core]:
    core = Core(load_settings())
    core.ensure_schema()
    yield core
    core.close()


@pytest.fixture
def seeded(tui_core: Core) -> dict[str, int]:
    return seed(tui_core)


@pytest.fixture
def daemon(tui_env: Env, seeded: dict[str, int], tui_dir: Path) -> Iterator[DaemonProcess]:
    """The real multiflexid on the seeded SQLite database."""
    with running_daemon(tui_env.vars(), tui_dir) as d:
        yield d
