"""The wire protocol (framing, builders, Params) and both socket clients.

The clients run against a small asyncio Unix-socket server defined here (FakeDaemon),
which speaks the protocol with the same module, so each test exercises both sides.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import pytest

from multiflexi.client import AsyncClient, Client
from multiflexi.errors import (
    ERRORS,
    DaemonUnavailable,
    Forbidden,
    InvalidInput,
    MethodNotFound,
    MultiFlexiError,
    NotFound,
    ParseError,
    ProtocolError,
)
from multiflexi.protocol import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    Params,
    encode,
    error_from_response,
    error_response,
    message_kind,
    notification,
    parse_frame,
    request,
    response,
)

# --- framing ---------------------------------------------------------------------------------


def test_constants() -> None:
    assert PROTOCOL_VERSION == 1
    assert DEFAULT_MAX_FRAME == 1024 * 1024


def test_encode_is_one_compact_utf8_line() -> None:
    frame = encode(request(7, "job.list", {"note": "a\nb", "name": "Účetní s.r.o."}))
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert b" " not in frame.replace("Účetní s.r.o.".encode(), b"")
    assert "Účetní".encode() in frame
    assert parse_frame(frame) == {
        "jsonrpc": "2.0", "id": 7, "method": "job.list",
        "params": {"note": "a\nb", "name": "Účetní s.r.o."},
    }


def test_encode_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(ValueError):
        encode({"x": float("nan")})
    with pytest.raises(TypeError):
        encode({"x": datetime.now(UTC)})


@pytest.mark.parametrize(
    ("frame", "cls", "text"),
    [
        (b"", ParseError, "empty frame"),
        (b"\xff\xfe{}", ParseError, "not valid UTF-8 (byte 0xff at offset 0)"),
        (b'{"jsonrpc": "2.0", "method": "x"', ParseError, "not valid JSON"),
        (b'{"jsonrpc":"2.0","id":1,"result":NaN}', ParseError, "NaN is not valid JSON"),
        (b"[" * 100000 + b"]" * 100000, ParseError, "not valid JSON"),
        (b'[{"jsonrpc":"2.0","id":1,"method":"x"}]', ProtocolError,
         "batch requests are not supported"),
        (b'"hello"', ProtocolError, "must be a JSON object, not a string"),
        (b"42", ProtocolError, "must be a JSON object, not a number"),
        (b'{"id":1,"method":"x"}', ProtocolError, 'missing "jsonrpc": "2.0"'),
        (b'{"jsonrpc":"1.0","id":1,"method":"x"}', ProtocolError,
         '"jsonrpc" must be "2.0", not \'1.0\''),
        (b'{"jsonrpc":2.0,"id":1,"method":"x"}', ProtocolError, 'must be "2.0", not 2.0'),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', ProtocolError,
         '"method" must be a non-empty string, not 5'),
        (b'{"jsonrpc":"2.0","id":1,"method":""}', ProtocolError, "non-empty string"),
        (b'{"jsonrpc":"2.0","id":true,"method":"x"}', ProtocolError,
         '"id" must be an integer, a string or null, not true'),
        (b'{"jsonrpc":"2.0","id":1.5,"method":"x"}', ProtocolError, "not 1.5"),
        (b'{"jsonrpc":"2.0","id":{},"method":"x"}', ProtocolError, "not an object"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1,2]}', ProtocolError,
         "positional parameters are not supported"),
        (b'{"jsonrpc":"2.0","id":1,"method":"x","params":"a"}', ProtocolError,
         '"params" must be an object'),
        (b'{"jsonrpc":"2.0"}', ProtocolError, 'neither "method" nor "id"'),
        (b'{"jsonrpc":"2.0","id":1}', ProtocolError, 'exactly one of "result" and "error"'),
        (b'{"jsonrpc":"2.0","id":1,"result":1,"error":{}}', ProtocolError, "exactly one"),
        (b'{"jsonrpc":"2.0","id":1,"error":"bad"}', ProtocolError, '"error" must be an object'),
        (b'{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}', ProtocolError,
         '"error.code" must be an integer'),
        (b'{"jsonrpc":"2.0","id":1,"error":{"code":1}}', ProtocolError,
         '"error.message" must be a string'),
    ],
)
def test_parse_frame_rejects(frame: bytes, cls: type[ProtocolError], text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_frame(frame)
    assert type(info.value) is cls
    assert text in info.value.message
    assert info.value.code == (-32700 if cls is ParseError else -32600)


def test_parse_frame_keeps_the_id_of_a_bad_request() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_frame(b'{"jsonrpc":"2.0","id":12,"method":"x","params":[1]}')
    assert info.value.request_id == 12
    with pytest.raises(ProtocolError) as info:
        parse_frame(b'{"jsonrpc":"2.0","id":[1],"method":"x"}')
    assert info.value.request_id is None


def test_parse_frame_accepts_every_kind() -> None:
    assert message_kind(parse_frame(b'{"jsonrpc":"2.0","id":"a","method":"x"}\r\n')) == "request"
    assert message_kind(parse_frame(encode(notification("job.changed", {"job": {}})))) == (
        "notification"
    )
    assert message_kind(parse_frame(encode(response(3, None)))) == "response"
    assert parse_frame(encode(response(None, [1])))["result"] == [1]


# --- builders and errors ---------------------------------------------------------------------


def test_builders() -> None:
    assert request(1, "daemon.status") == {
        "jsonrpc": "2.0", "id": 1, "method": "daemon.status", "params": {},
    }
    assert response(2, {"a": 1}) == {"jsonrpc": "2.0", "id": 2, "result": {"a": 1}}
    assert notification("job.output", {"job_id": 1}) == {
        "jsonrpc": "2.0", "method": "job.output", "params": {"job_id": 1},
    }
    err = error_response(5, NotFound("job 9 not found", {"id": 9, "name": "spoofed"}))
    assert err == {
        "jsonrpc": "2.0", "id": 5,
        "error": {"code": -32004, "message": "job 9 not found",
                  "data": {"id": 9, "name": "not_found"}},
    }


@pytest.mark.parametrize("cls", sorted(ERRORS.values(), key=attrgetter("code")))
def test_error_round_trip(cls: type[MultiFlexiError]) -> None:
    sent = cls("something went wrong with 'x'", {"field": "params.x"})
    got = error_from_response(parse_frame(encode(error_response(3, sent))))
    assert type(got) is cls
    assert (got.code, got.name, got.message, got.data) == (
        sent.code, sent.name, sent.message, {"field": "params.x"}
    )


def test_error_from_a_foreign_server() -> None:
    by_code = error_from_response({"id": 1, "error": {"code": -32601, "message": "nope"}})
    assert type(by_code) is MethodNotFound
    unknown = error_from_response(
        {"id": 1, "error": {"code": 7, "message": "odd", "data": {"name": "weird", "x": 1}}}
    )
    assert type(unknown) is MultiFlexiError and unknown.data == {"x": 1}
    scalar = error_from_response({"id": 1, "error": {"code": -32004, "message": "m", "data": 5}})
    assert type(scalar) is NotFound and scalar.data == {"detail": 5}


# --- Params ----------------------------------------------------------------------------------


def invalid(fn: Callable[[], Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        fn()
    return info.value


def test_params_ints() -> None:
    p = Params({"id": 3, "limit": "x", "offset": None, "flag": True, "big": 5000})
    assert p.int("id") == 3
    err = invalid(lambda: p.opt_int("limit", 50, min=1, max=1000))
    assert err.message == "params.limit: must be an integer between 1 and 1000, not 'x'"
    assert err.data == {"field": "params.limit"} and err.code == -32602
    assert p.opt_int("offset", 0, min=0) == 0
    assert p.opt_int("absent") is None
    assert invalid(lambda: p.int("flag")).message == "params.flag: must be an integer, not true"
    assert "at most 1000, not 5000" in invalid(lambda: p.int("big", max=1000)).message
    assert invalid(lambda: p.int("missing")).message == "params.missing: required (an integer)"
    assert "at least 1, not 0" in invalid(lambda: Params({"n": 0}).int("n", min=1)).message
    assert "not 2.0" in invalid(lambda: Params({"n": 2.0}).int("n")).message


def test_params_strings_bools_enums() -> None:
    p = Params({"slug": "acme", "empty": "", "n": 1, "active": False, "state": "runing"})
    assert p.str("slug") == "acme"
    assert p.opt_str("nothing", "dflt") == "dflt"
    assert invalid(lambda: p.str("empty")).message == "params.empty: must not be empty"
    assert p.str("empty", allow_empty=True) == ""
    assert invalid(lambda: p.opt_str("n")).message == "params.n: must be a string, not 1"
    assert "at most 3 characters" in invalid(lambda: p.str("slug", max_len=3)).message
    assert p.bool("active") is False
    assert p.opt_bool("other", True) is True
    assert invalid(lambda: p.bool("slug")).message == (
        "params.slug: must be true or false, not 'acme'"
    )
    err = invalid(lambda: p.enum("state", ("running", "failed")))
    assert err.message == "params.state: must be one of 'running', 'failed', not 'runing'"
    assert p.opt_enum("kind", ["a"]) is None
    assert Params({"s": "a"}).enum("s", ["a", "b"]) == "a"


def test_params_collections() -> None:
    p = Params({"env": {"A": "1", "B": 2}, "names": ["x", 3], "ids": [1, 2], "bad": "A=1"})
    assert invalid(lambda: p.str_map("env")).message == "params.env.B: must be a string, not 2"
    assert Params({"env": {"A": "1"}}).str_map("env") == {"A": "1"}
    assert p.str_map("absent") == {}
    assert "required" in invalid(lambda: p.str_map("absent2", required=True)).message
    assert "must be an object of string values, not 'A=1'" in invalid(
        lambda: p.str_map("bad")
    ).message
    assert invalid(lambda: p.str_list("names")).message == (
        "params.names[1]: must be a string, not 3"
    )
    assert p.int_list("ids", min=1) == [1, 2]
    assert p.str_list("none") == []
    assert "must be a list of integers" in invalid(lambda: p.int_list("bad")).message


def test_params_datetime() -> None:
    p = Params({"a": "2024-03-31T01:30:00Z", "b": "2024-03-31T03:30:00+02:00",
                "naive": "2024-03-31T01:30:00", "junk": "tomorrow", "num": 5})
    a = p.datetime("a")
    assert a == datetime(2024, 3, 31, 1, 30, tzinfo=UTC)
    assert p.datetime("b").utcoffset() == timedelta(hours=2)
    for name, shown in (("naive", "'2024-03-31T01:30:00'"), ("junk", "'tomorrow'"), ("num", "5")):
        err = invalid(lambda name=name: p.datetime(name))  # type: ignore[misc]
        assert err.message == (
            f"params.{name}: must be an ISO 8601 date-time with a time zone "
            f"(e.g. 2024-05-01T08:00:00Z), not {shown}"
        )
    assert p.opt_datetime("from") is None


def test_params_done_and_exactly_one() -> None:
    p = Params({"id": 1, "limt": 5, "zzz": None})
    p.int("id")
    p.opt_int("limit")
    err = invalid(p.done)
    assert err.message == "params: unknown parameters limt, zzz (expected: id, limit)"
    assert err.data["unknown"] == ["limt", "zzz"]
    q = Params({"slug": "acme", "id": None})
    assert q.exactly_one("id", "slug") == "slug"
    q.done()
    assert invalid(lambda: Params({}).exactly_one("id", "slug")).message == (
        "params: give exactly one of id, slug (got none)"
    )
    assert "(got id, slug)" in invalid(
        lambda: Params({"id": 1, "slug": "a"}).exactly_one("id", "slug")
    ).message
    assert invalid(lambda: Params([1])).message == "params: must be an object, not a list"  # type: ignore[arg-type]
    Params(None).done()


def test_params_references_and_nested_objects() -> None:
    p = Params({"company": "acme", "id": 7, "flag": True, "zero": 0,
                "selection": {"ids": [1, "x"], "tag": "bank", "typo": 1}, "bad": [1]})
    assert (p.opt_ref("company"), p.opt_ref("id"), p.opt_ref("absent")) == ("acme", 7, None)
    assert invalid(lambda: p.opt_ref("flag")).message == (
        "params.flag: must be an id (an integer) or a name (a string), not true")
    assert "at least 1, not 0" in invalid(lambda: p.opt_ref("zero")).message
    sel = p.opt_object("selection")
    assert sel.opt_str("tag") == "bank"
    err = invalid(lambda: sel.int_list("ids"))
    assert (err.message, err.data) == ("params.selection.ids[1]: must be an integer, not 'x'",
                                       {"field": "params.selection.ids[1]"})
    assert invalid(sel.done).data == {"field": "params.selection", "unknown": ["typo"]}
    assert invalid(lambda: p.opt_object("bad")).message == (
        "params.bad: must be an object, not a list")
    empty = p.opt_object("absent")
    assert empty.opt_str("tag") is None
    empty.done()


# --- a small daemon --------------------------------------------------------------------------


class FakeDaemon:
    """Serves a few methods over a Unix socket, like multiflexid would."""

    def __init__(self, path: Path, refuse: str | None = None) -> None:
        self.path = path
        self.refuse = refuse
        self.ids: list[Any] = []
        self.server: asyncio.AbstractServer | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_unix_server(self.serve, str(self.path))

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            if self.refuse:
                writer.write(encode(error_response(None, Forbidden(self.refuse))))
                await writer.drain()
                return
            tasks = set()
            while line := await reader.readline():
                try:
                    msg = parse_frame(line)
                except ProtocolError as exc:
                    writer.write(encode(error_response(exc.request_id, exc)))
                    return
                self.ids.append(msg.get("id"))
                task = asyncio.create_task(self.handle(msg, writer))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except ConnectionError:
            pass
        finally:
            writer.close()
            self.writers.discard(writer)

    async def handle(self, msg: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        rid, method, p = msg["id"], msg["method"], Params(msg.get("params"))

        def send(message: dict[str, Any]) -> None:
            writer.write(encode(message))

        try:
            if method == "echo":
                result: Any = dict(msg.get("params") or {})
            elif method == "sleep":
                seconds, tag = p.opt_int("ms", 0, min=0) / 1000, p.opt_str("tag")
                p.done()
                await asyncio.sleep(seconds)
                result = tag
            elif method == "ticks":  # notifications around the answer
                before, after = p.int("before", min=0), p.int("after", min=0)
                p.done()
                for n in range(before):
                    send(notification("test.tick", {"n": n}))
                send(response(rid, {"sent": before + after}))
                await asyncio.sleep(0.05)
                for n in range(before, before + after):
                    send(notification("test.tick", {"n": n}))
                return
            elif method == "fail":
                raise NotFound("company 'nope' not found", {"slug": "nope"})
            elif method == "hangup":
                writer.close()
                return
            elif method == "huge":
                size = p.int("size")
                pad = "x" * size
                writer.write(b'{"jsonrpc":"2.0","id":%d,"result":"%s"}\n' % (rid, pad.encode()))
                return
            elif method == "garbage":
                writer.write(b"this is not json\n")
                return
            elif method == "refuse":
                send(error_response(None, Forbidden("you have been kicked out")))
                writer.close()
                return
            else:
                raise MethodNotFound(f"unknown method {method!r}")
            send(response(rid, result))
        except MultiFlexiError as exc:
            send(error_response(rid, exc))


def sock_path(tmp_path: Path) -> Path:
    path = tmp_path / "d.sock"
    if len(str(path)) > 100:  # AF_UNIX paths are short
        path = Path(tempfile.mkdtemp(prefix="mf")) / "d.sock"
    return path


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[FakeDaemon]:
    """A FakeDaemon in a thread of its own, for the blocking client."""
    fake = FakeDaemon(sock_path(tmp_path))
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        loop.run_until_complete(fake.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    yield fake
    asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def run_async(
    tmp_path: Path, body: Callable[[FakeDaemon], Awaitable[None]], refuse: str | None = None
) -> None:
    async def main() -> None:
        fake = FakeDaemon(sock_path(tmp_path), refuse)
        await fake.start()
        try:
            await asyncio.wait_for(body(fake), 10)
        finally:
            await fake.stop()

    asyncio.run(main())


# --- the blocking client ---------------------------------------------------------------------


def test_client_calls_and_errors(daemon: FakeDaemon) -> None:
    with Client(daemon.path) as c:
        assert c.call("echo", a=1, method="m") == {"a": 1, "method": "m"}
        assert c.call_with("echo", {"from": "2024-01-01T00:00:00Z"}) == {
            "from": "2024-01-01T00:00:00Z"
        }
        with pytest.raises(NotFound) as info:
            c.call("fail")
        assert info.value.message == "company 'nope' not found"
        assert info.value.data == {"slug": "nope"}
        with pytest.raises(InvalidInput, match=r"params\.ms: must be an integer of at least 0"):
            c.call("sleep", ms=-1)
        with pytest.raises(MethodNotFound):
            c.call("nope.nope")
        assert c.call("echo") == {}
    assert daemon.ids == [1, 2, 3, 4, 5, 6]


def test_client_queues_notifications_that_arrive_during_a_call(daemon: FakeDaemon) -> None:
    with Client(daemon.path) as c:
        assert c.call("ticks", before=3, after=2) == {"sent": 5}
        assert c.call("echo", x=1) == {"x": 1}
        got = [p["n"] for _, p in c.notifications(timeout=0.5)]
        assert got == [0, 1, 2, 3, 4]
        assert list(c.notifications(timeout=0.05)) == []


def test_client_timeout_leaves_the_connection_usable(daemon: FakeDaemon) -> None:
    with Client(daemon.path, timeout=5) as c:
        with pytest.raises(DaemonUnavailable, match=r"did not answer sleep within 0.05s"):
            c.call_with("sleep", {"ms": 300, "tag": "late"}, timeout=0.05)
        assert c.call("sleep", ms=0, tag="now") == "now"


@pytest.mark.parametrize(
    ("method", "params", "error", "text"),
    [
        ("hangup", {}, DaemonUnavailable, "connection to multiflexid lost"),
        ("refuse", {}, Forbidden, "you have been kicked out"),
        ("huge", {"size": DEFAULT_MAX_FRAME + 10}, ProtocolError,
         f"frame larger than {DEFAULT_MAX_FRAME} bytes"),
        ("garbage", {}, ProtocolError, "malformed frame: frame is not valid JSON"),
    ],
)
def test_client_connection_ends(
    daemon: FakeDaemon, method: str, params: dict[str, Any], error: type[MultiFlexiError],
    text: str,
) -> None:
    c = Client(daemon.path)
    with pytest.raises(error, match=text):
        c.call_with(method, params)
    assert not c.connected
    with pytest.raises(error, match=text):  # and it stays that way
        c.call("echo")


def test_client_small_frame_limit(daemon: FakeDaemon) -> None:
    with Client(daemon.path, max_frame=1000) as c:
        assert len(c.call("huge", size=900)) == 900
        with pytest.raises(ProtocolError, match="larger than 1000 bytes"):
            c.call("huge", size=1000)


@pytest.mark.parametrize("wait", [0, 0.3])
def test_client_refused_by_the_daemon(tmp_path: Path, wait: float) -> None:
    async def body(fake: FakeDaemon) -> None:
        def blocking() -> None:
            c = Client(fake.path)
            time.sleep(wait)  # with a wait the daemon has hung up before we write
            with pytest.raises(Forbidden, match=r"^uid 1234 is not in group multiflexi$"):
                c.call("daemon.status")
            c.close()

        await asyncio.to_thread(blocking)

    run_async(tmp_path, body, refuse="uid 1234 is not in group multiflexi")


def test_client_cannot_connect(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sock"
    with pytest.raises(DaemonUnavailable) as info:
        Client(missing)
    assert info.value.message == f"multiflexid is not running (no socket at {missing})"
    assert info.value.data == {"socket": str(missing), "running": False}

    stale = sock_path(tmp_path)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))  # a socket file nobody listens on
    with pytest.raises(DaemonUnavailable, match=f"not running .*{stale}"):
        Client(stale)


def test_client_permission_denied(daemon: FakeDaemon) -> None:
    """Root is never denied a socket, so as root the client runs as uid 65534."""
    daemon.path.chmod(0o600)
    expected = f"permission denied on {daemon.path}: add your user to group multiflexi"
    if os.geteuid() != 0:
        daemon.path.parent.chmod(0o000)
        try:
            with pytest.raises(DaemonUnavailable) as info:
                Client(daemon.path)
        finally:
            daemon.path.parent.chmod(0o700)
        assert info.value.message == expected
        return
    import subprocess
    import sys

    daemon.path.parent.chmod(0o755)  # reachable, but the socket itself is root's 0600
    code = (
        "import os\n"
        "from multiflexi.client import Client\n"
        "from multiflexi.errors import DaemonUnavailable\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "try:\n"
        f"    Client({str(daemon.path)!r})\n"
        "except DaemonUnavailable as e:\n"
        "    print(e.message)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=False)
    assert out.stdout.strip() == expected, out.stderr



# --- the asyncio client ----------------------------------------------------------------------


def test_async_concurrent_calls(tmp_path: Path) -> None:
    async def body(fake: FakeDaemon) -> None:
        async with await AsyncClient.connect(fake.path) as c:
            results = await asyncio.gather(
                c.call("sleep", ms=300, tag="a"),
                c.call("sleep", ms=100, tag="b"),
                c.call("sleep", ms=200, tag="c"),
                c.call("echo", n=4),
                c.call("fail"),
                return_exceptions=True,
            )
            assert results[:4] == ["a", "b", "c", {"n": 4}]
            assert isinstance(results[4], NotFound)
            assert fake.ids == [1, 2, 3, 4, 5]

    run_async(tmp_path, body)


def test_async_notifications_in_order(tmp_path: Path) -> None:
    async def body(fake: FakeDaemon) -> None:
        seen: list[int] = []
        c = AsyncClient(
            fake.path, on_notification=lambda m, p: seen.append(p["n"]), queue_notifications=True
        )
        await c.connect()
        assert await c.call("ticks", before=3, after=2) == {"sent": 5}
        assert seen == [0, 1, 2]  # those sent before the answer arrived before it
        got = [(await c.notifications.get())[1]["n"] for _ in range(5)]
        assert got == seen == [0, 1, 2, 3, 4]
        await c.close()

    run_async(tmp_path, body)


def test_async_queue_by_default_and_async_callbacks(tmp_path: Path) -> None:
    async def body(fake: FakeDaemon) -> None:
        plain = await AsyncClient.connect(fake.path)
        await plain.call("ticks", before=1, after=0)
        assert await plain.notifications.get() == ("test.tick", {"n": 0})
        await plain.close()

        seen: list[Any] = []

        async def on_note(method: str, params: dict[str, Any]) -> None:
            # A callback may call the daemon (it runs as a task).
            seen.append(await c.call("echo", **params))

        c = await AsyncClient.connect(fake.path, on_notification=on_note)
        await c.call("ticks", before=2, after=0)
        for _ in range(50):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.01)
        assert seen == [{"n": 0}, {"n": 1}]
        assert c.notifications.empty()  # a callback and no queue_notifications: no queue
        await c.close()

    run_async(tmp_path, body)


def test_async_disconnect_fails_pending_calls(tmp_path: Path) -> None:
    async def body(fake: FakeDaemon) -> None:
        lost: list[MultiFlexiError] = []
        c = await AsyncClient.connect(fake.path, on_disconnect=lost.append)
        slow = asyncio.create_task(c.call("sleep", ms=2000))
        await asyncio.sleep(0.05)
        with pytest.raises(DaemonUnavailable, match="connection to multiflexid lost"):
            await c.call("hangup")
        with pytest.raises(DaemonUnavailable, match="connection to multiflexid lost"):
            await slow
        assert c.closed.is_set() and not c.connected
        assert [type(e) for e in lost] == [DaemonUnavailable]
        with pytest.raises(DaemonUnavailable):
            await c.call("echo")
        await c.close()
        assert len(lost) == 1

    run_async(tmp_path, body)


def test_async_close_is_not_a_disconnect(tmp_path: Path) -> None:
    async def body(fake: FakeDaemon) -> None:
        lost: list[MultiFlexiError] = []
        c = AsyncClient(fake.path, on_disconnect=lost.append)
        with pytest.raises(RuntimeError, match="not connected"):
            await c.call("echo")
        async with c:
            slow = asyncio.create_task(c.call("sleep", ms=2000))
            await asyncio.sleep(0.05)
        with pytest.raises(DaemonUnavailable, match="closed"):
            await slow
        assert c.closed.is_set() and lost == []

    run_async(tmp_path, body)


def test_async_timeout(tmp_path: Path) -> None:
    async def body(fake: FakeDaemon) -> None:
        async with AsyncClient(fake.path, timeout=0.05) as c:
            with pytest.raises(DaemonUnavailable, match=r"did not answer sleep within 0.05s"):
                await c.call("sleep", ms=300)
            assert await c.call_with("sleep", {"ms": 100, "tag": "t"}, timeout=None) == "t"

    run_async(tmp_path, body)


@pytest.mark.parametrize(
    ("method", "params", "error", "text"),
    [
        ("refuse", {}, Forbidden, "you have been kicked out"),
        ("huge", {"size": 2000}, ProtocolError, "larger than 1000 bytes"),
        ("huge", {"size": 999}, ProtocolError, "larger than 1000 bytes"),  # with the envelope
        ("garbage", {}, ProtocolError, "malformed frame"),
    ],
)
def test_async_connection_ends(
    tmp_path: Path, method: str, params: dict[str, Any], error: type[MultiFlexiError],
    text: str,
) -> None:
    async def body(fake: FakeDaemon) -> None:
        lost: list[MultiFlexiError] = []
        c = await AsyncClient.connect(fake.path, on_disconnect=lost.append, max_frame=1000)
        pending = asyncio.create_task(c.call("sleep", ms=2000))
        await asyncio.sleep(0.05)
        with pytest.raises(error, match=text):
            await c.call_with(method, params)
        with pytest.raises(error, match=text):
            await pending
        assert c.closed.is_set() and isinstance(c.error, error)
        assert [type(e) for e in lost] == [error]

    run_async(tmp_path, body)


def test_async_refused_by_the_daemon(tmp_path: Path) -> None:
    async def body(fake: FakeDaemon) -> None:
        lost: list[MultiFlexiError] = []
        with pytest.raises(Forbidden, match=r"^peer uid 1234 is not allowed$"):
            # The refusal may arrive while connecting or at the first call.
            c = await AsyncClient.connect(fake.path, on_disconnect=lost.append)
            await c.call("daemon.status")
        assert [e.message for e in lost] == ["peer uid 1234 is not allowed"]

    run_async(tmp_path, body, refuse="peer uid 1234 is not allowed")


def test_async_refusal_found_after_a_failed_write(tmp_path: Path) -> None:
    """The daemon refuses and hangs up before the client reads anything; the client's
    write fails first (EPIPE), and it must still report the daemon's reason."""
    path = sock_path(tmp_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()
    go = threading.Event()

    def refuse() -> None:
        conn, _ = listener.accept()
        go.wait(5)
        conn.sendall(encode(error_response(None, Forbidden("uid 1234 is not a member"))))
        conn.close()

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()

    async def body() -> None:
        lost: list[MultiFlexiError] = []
        c = await AsyncClient.connect(path, on_disconnect=lost.append)
        go.set()
        thread.join(5)
        time.sleep(0.1)  # noqa: ASYNC251 - keep the loop from reading before the write
        with pytest.raises(Forbidden, match=r"^uid 1234 is not a member$"):
            await c.call("daemon.status")
        assert [type(e) for e in lost] == [Forbidden]

    try:
        asyncio.run(body())
    finally:
        listener.close()


def test_async_cannot_connect(tmp_path: Path) -> None:
    async def body() -> None:
        with pytest.raises(DaemonUnavailable, match=f"no socket at {tmp_path / 'x.sock'}"):
            await AsyncClient.connect(tmp_path / "x.sock")

    asyncio.run(body())


def test_json_of_a_whole_exchange_is_line_per_message(tmp_path: Path) -> None:
    """What a shell user sees with socat: one JSON object per line each way."""

    async def body(fake: FakeDaemon) -> None:
        reader, writer = await asyncio.open_unix_connection(str(fake.path))
        writer.write(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{"a":"\xc3\xa9"}}\n')
        first = json.loads(await reader.readline())
        writer.write(b'{"jsonrpc":"2.0","id":2,"method":"echo","params":[1]}\n')
        second = json.loads(await reader.readline())
        assert first == {"jsonrpc": "2.0", "id": 1, "result": {"a": "é"}}
        assert second["id"] == 2 and second["error"]["code"] == -32600
        assert await reader.readline() == b""  # and the daemon hung up
        writer.close()

    run_async(tmp_path, body)


def test_params_refuse_text_no_database_can_store() -> None:
    p = Params(json.loads('{"env": {"A": "x\\ud800"}, "name": "a\\u0000b"}'))
    with pytest.raises(InvalidInput, match=r"params.env.A: must not contain an unpaired "
                                           r"surrogate \\ud800"):
        p.str_map("env")
    with pytest.raises(InvalidInput, match=r"params\.name: must not contain a NUL character"):
        p.str("name")
