"""Settings of every MultiFlexi program: defaults < config file < environment < options.

The config file is TOML (``/etc/multiflexi/multiflexi.conf`` when installed)::

    database_url = "postgresql+psycopg://multiflexi@/multiflexi?host=/run/postgresql"
    data_dir = "/var/lib/multiflexi"
    socket = "/run/multiflexi/multiflexid.sock"
    node = "node-a"
    max_parallel = 4

A key that is not known, or a value of the wrong type, is an error naming the file and key.
"""

from __future__ import annotations

import math
import os
import socket as _socket
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from multiflexi.access import ROLES

DEFAULT_CONFIG = "/etc/multiflexi/multiflexi.conf"
DEFAULT_DATA_DIR = "/var/lib/multiflexi"
DEFAULT_SOCKET = "/run/multiflexi/multiflexid.sock"
DEFAULT_PODMAN_URL = "unix:///run/podman/podman.sock"
DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"


class SettingsError(Exception):
    """The configuration file or an environment variable is unusable."""


@dataclass(frozen=True)
class Settings:
    """Everything a MultiFlexi program needs to know about where things are and limits."""

    config_path: Path | None = None
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    database_url: str = ""
    socket: Path = Path(DEFAULT_SOCKET)
    node: str = field(default_factory=_socket.gethostname)
    # How long a write to the SQLite database waits for another process's write lock
    # (SQLite's busy timeout) before it fails
    sqlite_busy_seconds: float = 30.0
    # Executor limits
    max_parallel: int = 4
    output_cap_bytes: int = 16 * 1024 * 1024
    # How much of a job's output also goes to the journal line by line
    journal_output_bytes: int = 1024 * 1024
    stop_grace_seconds: float = 10.0
    # Artifacts: per file and per job
    artifact_max_file_bytes: int = 16 * 1024 * 1024
    artifact_max_job_bytes: int = 64 * 1024 * 1024
    # Podman API
    podman_url: str = DEFAULT_PODMAN_URL
    # Docker Engine API
    docker_url: str = DEFAULT_DOCKER_URL
    # Multi-node leases (PostgreSQL)
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    # A job claimed by a node and not started this long after goes back to the queue
    claim_hold_seconds: float = 5.0
    # How often the daemon looks for work it was not told about (jobs queued by the CLI
    # straight into SQLite; PostgreSQL nodes are woken by NOTIFY)
    poll_seconds: float = 1.0
    # Largest JSON-RPC frame a client may send
    max_frame_bytes: int = 1024 * 1024
    # Roles of Unix groups: (group, role, company slug or None for all companies), from
    # the config file's [[access]] tables (multiflexi-cli access grant adds more)
    access: tuple[tuple[str, str, str | None], ...] = ()
    # Actions after a job: runs performed at once per node, attempts of a delivery that
    # fails temporarily, and the first pause between them (doubling, at most an hour)
    action_workers: int = 4
    action_max_attempts: int = 5
    action_retry_seconds: float = 30.0
    # Prometheus metrics over HTTP on host:port (e.g. 127.0.0.1:9471); empty: off
    metrics_listen: str = ""
    # Zabbix server or proxy (host[:port], port 10051 by default) that every job's end is
    # sent to; empty: only companies with their own zabbix_server report
    zabbix_server: str = ""
    # The Zabbix host values are sent under when the company names none (default: node)
    zabbix_host: str = ""

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'multiflexi.db'}"

    @property
    def secret_key_path(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"


# Config-file keys and environment variables for each setting.
_ENV = {
    "data_dir": "MULTIFLEXI_DATA_DIR",
    "database_url": "MULTIFLEXI_DATABASE_URL",
    "socket": "MULTIFLEXI_SOCKET",
    "node": "MULTIFLEXI_NODE",
    "sqlite_busy_seconds": "MULTIFLEXI_SQLITE_BUSY_SECONDS",
    "max_parallel": "MULTIFLEXI_MAX_PARALLEL",
    "output_cap_bytes": "MULTIFLEXI_OUTPUT_CAP_BYTES",
    "journal_output_bytes": "MULTIFLEXI_JOURNAL_OUTPUT_BYTES",
    "podman_url": "MULTIFLEXI_PODMAN_URL",
    "docker_url": "MULTIFLEXI_DOCKER_URL",
    "stop_grace_seconds": "MULTIFLEXI_STOP_GRACE_SECONDS",
    "artifact_max_file_bytes": "MULTIFLEXI_ARTIFACT_MAX_FILE_BYTES",
    "artifact_max_job_bytes": "MULTIFLEXI_ARTIFACT_MAX_JOB_BYTES",
    "lease_seconds": "MULTIFLEXI_LEASE_SECONDS",
    "heartbeat_seconds": "MULTIFLEXI_HEARTBEAT_SECONDS",
    "claim_hold_seconds": "MULTIFLEXI_CLAIM_HOLD_SECONDS",
    "poll_seconds": "MULTIFLEXI_POLL_SECONDS",
    "action_workers": "MULTIFLEXI_ACTION_WORKERS",
    "action_max_attempts": "MULTIFLEXI_ACTION_MAX_ATTEMPTS",
    "action_retry_seconds": "MULTIFLEXI_ACTION_RETRY_SECONDS",
    "metrics_listen": "MULTIFLEXI_METRICS_LISTEN",
    "zabbix_server": "MULTIFLEXI_ZABBIX_SERVER",
    "zabbix_host": "MULTIFLEXI_ZABBIX_HOST",
}


_KIND_NAMES = {"int": "non-negative integer", "float": "non-negative number"}


def _access(raw: Any, origin: str) -> tuple[tuple[str, str, str | None], ...]:
    """``[[access]]`` tables: ``group``, ``role`` and, for one company only, ``company``."""
    if not isinstance(raw, list):
        raise SettingsError(f"{origin}: access must be [[access]] tables (group, role, company)")
    out = []
    for i, entry in enumerate(raw):
        where = f"{origin}: access[{i}]"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where}: must be a table with group, role and company")
        unknown = set(entry) - {"group", "role", "company"}
        if unknown:
            raise SettingsError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                                "(known: group, role, company)")
        group, role, company = entry.get("group"), entry.get("role"), entry.get("company")
        if not isinstance(group, str) or not group.strip():
            raise SettingsError(f"{where}.group: a Unix group name is required")
        if role not in ROLES:
            raise SettingsError(f"{where}.role: {role!r} is not one of {', '.join(ROLES)}")
        if company is not None and (not isinstance(company, str) or not company.strip()):
            raise SettingsError(f"{where}.company: a company slug (or leave it out: every "
                                "company)")
        out.append((group.strip(), role, company.strip() if company else None))
    return tuple(out)


def _coerce(name: str, raw: Any, origin: str) -> Any:
    kinds = {f.name: str(f.type) for f in fields(Settings)
             if f.name not in ("config_path", "access")}
    if name not in kinds:
        raise SettingsError(f"{origin}: unknown setting (known: {', '.join(sorted(kinds))})")
    kind = kinds[name]
    try:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ValueError(raw)
        if kind == "int":
            value = int(raw)
            if value < 0 or (isinstance(raw, float) and raw != value):
                raise ValueError(raw)
            return value
        if kind == "float":
            value_f = float(raw)
            if not math.isfinite(value_f) or value_f < 0:
                raise ValueError(raw)
            return value_f
        if not isinstance(raw, str):  # paths and strings: a number is a mistake
            raise ValueError(raw)
        return Path(raw).expanduser() if kind in ("Path", "Path | None") else raw
    except (TypeError, ValueError):
        raise SettingsError(
            f"{origin}: {name} must be a {_KIND_NAMES.get(kind, 'string')}, not {raw!r}"
        ) from None


def load_settings(
    config: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from the config file, the environment and explicit overrides.

    ``config`` (or ``MULTIFLEXI_CONFIG``) names the TOML file; a missing default file is
    fine, a missing file that was asked for by name is an error.
    """
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    explicit = config is not None or bool(env.get("MULTIFLEXI_CONFIG"))  # "" is the default
    path = Path(config or env.get("MULTIFLEXI_CONFIG") or DEFAULT_CONFIG)
    try:
        present = path.exists()
    except PermissionError:
        present = True  # in a directory this user may not read: say so below
    if present and not os.access(path, os.R_OK):
        if explicit:
            raise SettingsError(f"{path}: cannot read it (permission denied; it may hold "
                                "the database's password, so only root and group "
                                "multiflexi may)")
        # The installed default is root:multiflexi 0640. Anyone else gets the defaults and
        # the environment: enough to reach the daemon's socket, not the database.
        present = False
    if present:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: {exc}") from None
        except OSError as exc:
            raise SettingsError(f"{path}: {exc.strerror}") from None
        known = {f.name for f in fields(Settings)} - {"config_path"}
        for key, raw in data.items():
            if key not in known:
                raise SettingsError(
                    f"{path}: unknown setting {key!r} (known: {', '.join(sorted(known))})"
                )
            values[key] = (_access(raw, str(path)) if key == "access"
                           else _coerce(key, raw, str(path)))
        values["config_path"] = path
    elif explicit:
        raise SettingsError(f"{path}: configuration file not found")
    for key, var in _ENV.items():
        if env.get(var):
            values[key] = _coerce(key, env[var], var)
    for key, raw in overrides.items():
        if raw is not None:
            values[key] = _coerce(key, raw, f"option {key}")
    return replace(Settings(), **values)
