"""What the end-to-end tests share: root-only tests, the .debs, the booted tree, the lock.

Tests marked ``root_only`` install packages, create users or switch users. `make test`
deselects them for anyone but root and says how many it left out; run directly as
another user, they fail saying why (they are never skipped in silence). What they time
(the ``timings`` fixture, tests/support/summary.py) is printed at the end of the run.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import debs as debbuild
from tests.support.nspawn import MachineError, debian_tree


@pytest.fixture(scope="session")
def require_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (installs packages, switches users): run as root, or "
                    "leave root-only tests out with -m 'not root_only' (make test does)")


@pytest.fixture(scope="session")
def debs(require_root: None, tmp_path_factory: pytest.TempPathFactory,
         timings: dict[str, float]) -> list[Path]:
    """The .debs built by `dpkg-buildpackage -us -uc -b` from a copy of this checkout's
    tracked files, once per session (test_deb.py and test_systemd.py install them)."""
    try:
        built, seconds = debbuild.build_checkout(tmp_path_factory.mktemp("deb"))
    except debbuild.BuildError as exc:
        pytest.fail(str(exc))
    timings["build .debs (dpkg-buildpackage)"] = seconds
    print(f"built {[p.name for p in built]} in {seconds:.1f} s")
    return built


@pytest.fixture(scope="session")
def booted_tree(debs: list[Path], timings: dict[str, float]) -> Path:
    """The cached Debian 12 tree the booted-container tests unpack (tests/support/nspawn.py),
    with everything the .debs depend on."""
    try:
        tarball, seconds = debian_tree(debs)
    except MachineError as exc:
        pytest.fail(str(exc))
    if seconds is not None:
        timings["build the Debian tree (mmdebstrap; cached for later runs)"] = seconds
    return tarball


@pytest.fixture(scope="module")
def machine_lock() -> Iterator[None]:
    """One package test at a time on this machine (an abstract socket: no file left).

    Also taken by the booted-container tests: the container's processes (user
    multiflexi's uid, /usr/lib/multiflexi programs) are visible here, and would be taken
    for leftovers of the package installed on this machine."""
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + 900
    while True:
        try:
            lock.bind("\0multiflexi-e2e-deb")
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("another multiflexi package test held the machine for 15 minutes")
            time.sleep(2)
    yield
    lock.close()
