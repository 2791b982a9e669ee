"""Socket calls as user nobody (uid 65534, group nogroup, no other group): what a caller
has who holds only the roles granted to group ``nogroup``. Switching users needs root."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import Env

_SCRIPT = """\
import json, os, sys
from multiflexi.client import Client
from multiflexi.errors import MultiFlexiError
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = []
with Client(sys.argv[1], timeout=20) as c:
    for method, params in json.loads(sys.argv[2]):
        try:
            c.call_with(method, params)
            out.append([method, "ok"])
        except MultiFlexiError as exc:
            out.append([method, exc.name + ": " + exc.message])
print(json.dumps(out))
"""


@contextmanager
def public_socket(env: Env) -> Iterator[Env]:
    """The installation with its socket in a directory anyone may enter (nobody's client
    must reach it; the daemon itself decides what it may do)."""
    public = Path(tempfile.mkdtemp(prefix="mff-"))
    public.chmod(0o755)
    try:
        yield Env(env.data_dir, env.db_url, public / "mf.sock")
    finally:
        shutil.rmtree(public, ignore_errors=True)


async def calls_as_nobody(socket: Path, calls: list[tuple[str, dict[str, Any]]]
                          ) -> list[tuple[str, str]]:
    """Each call's answer: ``"ok"`` or ``"<error name>: <message>"``, in order."""
    await asyncio.to_thread(socket.chmod, 0o666)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(_SCRIPT), str(socket), json.dumps(calls),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [(method, answer) for method, answer in json.loads(out)]
