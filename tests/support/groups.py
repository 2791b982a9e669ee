"""Tests that share something this machine has only once run on one pytest-xdist worker.

`make test` runs the suite on several workers (``-n``, ``--dist loadgroup``). Most tests
need nothing of each other's: each worker has its own PostgreSQL cluster and dockerd
(directories of their own), tests have their own temporary directories, tmux servers
and free ports. What the machine has once goes into a group; xdist runs the tests of a
group one after another on one worker (other tests run beside them on the others):

- ``packages``: the .deb installed on this machine with apt (tests/e2e/test_deb.py: dpkg's
  lock, /etc/multiflexi, /var/lib/multiflexi, user multiflexi) and the booted containers
  (test_systemd.py, test_upgrade.py), whose processes this machine sees and would take
  for leftovers of the installed package (``machine_lock``). One worker also builds the
  .debs once, not once per worker.
- ``unix-users``: the users and groups tests/e2e/test_access.py creates on this machine
  (mftbob, mft-viewers, ...) and deletes again.
- ``podman``: Podman's storage is the machine's. Daemons of different tests name their
  containers multiflexi-job-<id> with ids from 1 (and replace a container of that name),
  executors sweep the containers of daemons that ended, and the session's service
  removes the job containers it finds at its end.
- ``snapshots``: syrupy finds unused snapshots only among the tests one process ran.

A test belongs to a group by a fixture it uses (or, for Podman, its ``podman`` mark).
"""

from __future__ import annotations

import pytest

GROUPS: dict[str, tuple[set[str], str | None]] = {  # group: (fixtures, mark)
    "packages": ({"debs", "booted_tree", "machine_lock"}, None),
    "unix-users": ({"unix_users"}, None),
    "podman": ({"podman_conf", "podman_image", "podman_service"}, "podman"),
    "snapshots": ({"snap_compare"}, None),
}


def group_of(item: pytest.Item) -> str | None:
    used = set(getattr(item, "fixturenames", ()))
    for name, (fixtures, mark) in GROUPS.items():
        if used & fixtures or (mark is not None and item.get_closest_marker(mark)):
            return name
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (--dist loadgroup)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return  # (its mark would be unknown: --strict-markers)
    for item in items:
        name = group_of(item)
        if name is not None:
            item.add_marker(pytest.mark.xdist_group(name))
