"""Removing a job's directory once its artifacts are stored."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def remove_job_dir(path: Path, log_fields: dict[str, Any] | None = None) -> bool:
    """Remove ``path`` and everything in it; what cannot be removed is logged (naming the
    first failure, its owner and what to do), never silently left. True if it is gone."""
    failures: list[tuple[str, OSError]] = []

    def failed(_fn: Any, where: str, info: Any) -> None:
        exc = info[1]
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            failures.append((where, exc))

    shutil.rmtree(path, onerror=failed)  # (onexc from Python 3.12 on)
    if not failures:
        return True
    where, exc = failures[0]
    try:
        owner = os.lstat(where).st_uid
        whose = f", owned by uid {owner}" if owner != os.geteuid() else ""
    except OSError:
        whose = ""
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    log.warning("job directory %s was not removed: %s: %s%s%s; remove it with `rm -rf %s` "
                "as root", path, where, exc.strerror or exc, whose, more, path,
                extra=log_fields or {})
    return False

