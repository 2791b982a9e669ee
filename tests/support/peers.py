"""Socket calls made by another Unix user: nobody (uid 65534, group nogroup), in a child
process that drops root's identity before it connects, so the daemon sees that peer."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import Env

_AS_NOBODY = """\
import json, os, sys
from multiflexi.client import Client
from multiflexi.errors import MultiFlexiError
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = []
with Client(sys.argv[1], timeout=30) as c:
    for method, params in json.loads(sys.argv[2]):
        try:
            out.append({"result": c.call_with(method, params)})
        except MultiFlexiError as exc:
            out.append({"error": exc.name + ": " + exc.message})
print(json.dumps(out))
"""


@contextmanager
def public_socket(env: Env) -> Iterator[Env]:
    """``env`` with its socket in a directory anyone may enter (pytest's are root's)."""
    folder = Path(tempfile.mkdtemp(prefix="mfp-"))
    folder.chmod(0o755)
    try:
        yield Env(env.data_dir, env.db_url, folder / "mf.sock")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def calls_as_nobody(socket: Path, calls: list[tuple[str, dict[str, Any]]]
                    ) -> list[dict[str, Any]]:
    """Each call's ``{"result": ...}`` or ``{"error": "name: message"}``."""
    socket.chmod(0o666)
    proc = subprocess.run([sys.executable, "-c", _AS_NOBODY, str(socket), json.dumps(calls)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    answers: list[dict[str, Any]] = json.loads(proc.stdout)
    return answers
