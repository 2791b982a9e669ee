"""Hypothesis fuzzing: app-JSON import and protocol frames.

Whatever comes in, the answer is a clear error (or a success), the database is unchanged
when the import fails, and the daemon stays alive for everyone else.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from multiflexid.core import Core
from multiflexid.services.apps import import_files
from multiflexid.store.orm import Base
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.factory import shell_app

pytestmark = pytest.mark.fault

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

KEYS = ["name", "description", "executable", "environment", "uuid", "artifacts", "exitCodes",
        "cmdparamsTemplate", "$schema", "schemaVersion", "tags", "topics", "version"]


@st.composite
def mangled_apps(draw: st.DrawFn) -> str:
    """A real-looking app definition with some keys replaced, removed or broken."""
    doc: dict[str, Any] = shell_app("Fuzzed")
    doc["uuid"] = "0f667a75-6c60-46c0-a1a8-9bc35b21a396"
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=4)):
        action = draw(st.sampled_from(["replace", "delete", "env"]))
        if action == "replace":
            doc[key] = draw(json_values)
        elif action == "delete":
            doc.pop(key, None)
        else:
            doc["environment"] = {draw(st.text(max_size=8)): draw(json_values)}
    text = json.dumps(doc)
    if draw(st.booleans()):  # sometimes not even JSON
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=5)) + text[cut + 1:]
    return text


def _dump(core: Core) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with core.db.read_session() as s:
        for table in Base.metadata.sorted_tables:
            out[table.name] = [tuple(r) for r in s.execute(select(table)).all()]
    return out


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=mangled_apps())
@example(text='{"name": "a\\ud800", "x\\ud801": 1, "executable": "\\u0000"}')
@example(text='{"name": "F", "description": "d", "executable": "sh", "environment": {},'
              ' "exitCodes": true}')
@example(text='{"name": "F", "description": "d", "executable": "sh", "environment": {},'
              ' "topics": true, "exitCodes": {"0": 5}}')
def test_app_json_import_fuzz(core: Core, tmp_path: Path, text: str) -> None:
    core.ensure_schema()
    before = _dump(core)
    path = tmp_path / "fuzzed.app.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    (result,) = import_files(core.db, [path])
    if result.ok:
        return  # a valid definition is fine too (then it was imported, whole)
    assert result.errors, "a failed import must say why"
    for err in result.errors:
        assert err.startswith(("$", str(path))) or "not UTF-8" in err or "uuid" in err, err
    assert _dump(core) == before  # nothing half-written


frames = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": st.one_of(st.integers(), st.text(max_size=5), st.none(), st.floats()),
        "method": st.sampled_from(["job.list", "job.get", "runtemplate.run", "nope",
                                   "events.subscribe", "artifact.get", 5]),
        "params": json_values,
    }).map(lambda d: json.dumps(d).encode()),
)


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("fuzzd")
    env = Env(tmp / "data", f"sqlite:///{tmp / 'data' / 'mf.db'}", tmp / "mf.sock")
    with running_daemon(env.vars(), tmp) as d:
        yield d


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames)
def test_protocol_frame_fuzz(fuzz_daemon: DaemonProcess, frame: bytes) -> None:
    """Send the frame, then a probe request on the same connection: every reply must be a
    JSON-RPC message; a bad frame gets an error and the connection closes, anything else
    leaves the connection serving (the probe is answered)."""
    probe = json.dumps({"jsonrpc": "2.0", "id": "probe", "method": "daemon.status"}).encode()
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(fuzz_daemon.socket))
    buf = b""
    try:
        sock.sendall(frame.replace(b"\n", b" ") + b"\n" + probe + b"\n")
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break  # closed after an error
            buf += data
            if b'"id":"probe"' in buf:
                break
    finally:
        sock.close()
    messages = [json.loads(line) for line in buf.splitlines() if line.strip()]
    for msg in messages:
        assert msg.get("jsonrpc") == "2.0"
        if "error" in msg:
            assert isinstance(msg["error"]["message"], str) and msg["error"]["message"]
            assert msg["error"]["data"]["name"]
    answered = any(m.get("id") == "probe" for m in messages)
    closed_with_error = any("error" in m and m.get("id") != "probe" for m in messages)
    assert answered or closed_with_error, messages
    assert fuzz_daemon.call("daemon.status")["pid"] > 0  # alive, serving others
