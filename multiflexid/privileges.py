"""Run as the owner of the data dir when started as root.

Upstream application packages call ``multiflexi-cli application:import-json --file X``
from their postinst, as root. Run as root, the CLI would leave root-owned files in the
data dir (the SQLite database and its -wal/-shm files, secret.key, job directories) that
the daemon, running as user ``multiflexi``, could then not write. So before anything is
opened, a CLI started as root switches to the user owning the data dir, with that user's
groups, as ``runuser -u multiflexi`` would (but USER and LOGNAME still name root, who
launched it). It keeps one privilege of root: reading any file (CAP_DAC_READ_SEARCH), so
``--file /root/app.json`` still works; files it writes are the data dir owner's.

Nothing is printed: the switch is invisible in normal output (``MULTIFLEXI_DEBUG=1``
logs it at debug level). When root owns the data dir, or it does not exist yet (a
developer's checkout, a package not configured yet), nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import pwd
import sys
from collections.abc import Sequence
from pathlib import Path

from multiflexi.errors import MultiFlexiError
from multiflexi.settings import SettingsError, load_settings

log = logging.getLogger(__name__)

_PR_SET_KEEPCAPS = 8
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_DAC_READ_SEARCH = 2


class PrivilegeError(MultiFlexiError):
    """The switch to the data dir's owner was needed but failed."""

    name = "privilege_error"


def become_data_dir_owner(argv: Sequence[str], prog: str = "multiflexi-cli") -> None:
    """Entry points' first call: switch as ``drop_to_data_dir_owner``, or exit 1 saying why."""
    try:
        drop_to_data_dir_owner(argv)
    except PrivilegeError as exc:
        sys.exit(f"{prog}: error: {exc.message}")


def config_from_argv(argv: Sequence[str]) -> str | None:
    """The ``--config PATH`` / ``--config=PATH`` given before the first command, if any."""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.partition("=")[2]
    return None


def data_dir_owner(data_dir: Path) -> tuple[int, int] | None:
    """(uid, gid) of the data dir, or None when it does not exist."""
    try:
        st = data_dir.stat()
    except OSError:
        return None
    return st.st_uid, st.st_gid


def drop_to_data_dir_owner(argv: Sequence[str] | None = None) -> int | None:
    """When running as root and the data dir belongs to another user, become that user.

    Returns the uid switched to, or None when nothing was changed. Raises PrivilegeError
    if the switch was needed and failed: carrying on as root would leave files the daemon
    cannot write.
    """
    if os.geteuid() != 0:
        return None
    try:
        settings = load_settings(config_from_argv(argv or []))
    except SettingsError:
        return None  # the command itself reports the broken configuration
    owner = data_dir_owner(settings.data_dir)
    if owner is None or owner[0] == 0:
        return None
    uid, dir_gid = owner
    switch_user(uid, dir_gid)
    log.debug("running as uid %d, the owner of %s", uid, settings.data_dir)
    return uid


def switch_user(uid: int, fallback_gid: int) -> None:
    """setgroups/initgroups, setgid, setuid to ``uid``; keep only CAP_DAC_READ_SEARCH.

    ``fallback_gid`` is used (with no supplementary groups) when ``uid`` has no passwd
    entry.
    """
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    keep_caps = _set_keepcaps(True)
    try:
        if entry is not None:
            os.initgroups(entry.pw_name, entry.pw_gid)
            os.setgid(entry.pw_gid)
        else:
            os.setgroups([])
            os.setgid(fallback_gid)
        os.setuid(uid)
    except OSError as exc:
        name = entry.pw_name if entry else str(uid)
        raise PrivilegeError(
            f"cannot switch from root to {name}, the owner of the data directory: "
            f"{exc.strerror}"
        ) from None
    if keep_caps:
        _set_keepcaps(False)
        _keep_only_read_search()
    if entry is not None:
        # Nothing should look for files in root's home. USER and LOGNAME stay: they name
        # the person at the keyboard (a job's "launched by"), not the service user.
        os.environ["HOME"] = entry.pw_dir


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


def _set_keepcaps(on: bool) -> bool:
    """prctl(PR_SET_KEEPCAPS): keep permitted capabilities across setuid."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.prctl(_PR_SET_KEEPCAPS, int(on), 0, 0, 0) == 0)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _keep_only_read_search() -> bool:
    """capset: effective = permitted = {CAP_DAC_READ_SEARCH}, nothing inheritable.

    Best effort: without it the user's own permissions apply, which is still correct.
    Not passed on to programs this process executes (no inheritable or ambient caps).
    """
    libc = _libc()
    if libc is None:
        return False
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    bit = 1 << _CAP_DAC_READ_SEARCH
    data = (_CapData * 2)(_CapData(bit, bit, 0), _CapData(0, 0, 0))
    return bool(libc.capset(ctypes.byref(header), data) == 0)
