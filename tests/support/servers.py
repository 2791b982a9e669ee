"""Real servers the action tests start: an HTTP server that records what it receives
and answers as scripted (status, body, a delay), and an SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a server that hangs)


class HttpRecorder:
    """``replies`` are used in order (the last one again when they run out); a callable
    gets the request and returns the Reply."""

    def __init__(self, replies: list[Reply] | Callable[[Received], Reply] | None = None
                 ) -> None:
        self.replies = replies if replies is not None else [Reply()]
        self.received: list[Received] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                got = Received("POST", self.path, {k.lower(): v for k, v in
                                                   self.headers.items()},
                               self.rfile.read(length))
                with recorder.lock:
                    recorder.received.append(got)
                    reply = recorder._reply(got)
                if reply.delay:
                    time.sleep(reply.delay)
                data = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _reply(self, got: Received) -> Reply:
        if callable(self.replies):
            return self.replies(got)
        index = min(len(self.received) - 1, len(self.replies) - 1)
        return self.replies[index]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.received)} request(s) received, not {count}")

    def __enter__(self) -> HttpRecorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> Any:
        from email import message_from_bytes, policy

        return message_from_bytes(self.content, policy=policy.default)


@contextmanager
def smtp_server(reply: str = "250 OK") -> Iterator[tuple[int, list[Mail]]]:
    """A real SMTP server (aiosmtpd) on a free local port: (its port, mails received).
    ``reply`` is its answer to DATA (``451 ...`` for a temporary refusal)."""
    from aiosmtpd.controller import Controller

    mails: list[Mail] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            if reply.startswith("250"):
                mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos),
                                  envelope.content))
            return reply

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, mails
    finally:
        controller.stop()
