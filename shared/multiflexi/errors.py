"""Errors with a stable name and code, shared by the daemon, the CLI and the TUI.

The same classes travel over the wire (JSON-RPC ``error.code`` and ``error.data.name``) and
decide CLI exit codes, so a script can tell "not found" from "daemon down".
"""

from __future__ import annotations

from typing import Any, ClassVar


class MultiFlexiError(Exception):
    """Base of every error a user is meant to read. The message is one clear line."""

    code: ClassVar[int] = -32000
    name: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}


class NotFound(MultiFlexiError):
    code = -32004
    name = "not_found"


class Conflict(MultiFlexiError):
    """The request contradicts what is stored (duplicate slug, template in use...)."""

    code = -32009
    name = "conflict"


class InvalidInput(MultiFlexiError):
    """A parameter or a file is wrong; the message names the field."""

    code = -32602
    name = "invalid_params"


class Forbidden(MultiFlexiError):
    code = -32003
    name = "forbidden"


class InternalError(MultiFlexiError):
    """The daemon failed unexpectedly (a bug); ``data.error_id`` finds the traceback in
    its journal (``journalctl MULTIFLEXI_ERROR_ID=<id>``)."""

    code = -32603
    name = "internal_error"


class DaemonUnavailable(MultiFlexiError):
    """The daemon's socket does not answer."""

    code = -32010
    name = "daemon_unavailable"


class StorageError(MultiFlexiError):
    """The database cannot be reached or is not migrated."""

    code = -32011
    name = "storage_error"


class ProtocolError(MultiFlexiError):
    """A frame that is not a valid JSON-RPC 2.0 message (JSON-RPC "invalid request")."""

    code = -32600
    name = "protocol_error"
    # The id of the offending request when it could be read, so an error response can
    # carry it (JSON-RPC: null when the id is unknown). Never sent on the wire as data.
    request_id: int | str | None = None


class ParseError(ProtocolError):
    """A frame that is not UTF-8 JSON at all (JSON-RPC "parse error")."""

    code = -32700
    name = "parse_error"


class MethodNotFound(ProtocolError):
    """The method is not one the daemon serves."""

    code = -32601
    name = "method_not_found"


ERRORS: dict[str, type[MultiFlexiError]] = {
    cls.name: cls
    for cls in (
        MultiFlexiError, NotFound, Conflict, InvalidInput, Forbidden, InternalError,
        DaemonUnavailable,
        StorageError, ProtocolError, ParseError, MethodNotFound,
    )
}


def from_wire(code: int, message: str, data: dict[str, Any] | None) -> MultiFlexiError:
    """Rebuild the error a daemon sent (unknown names become MultiFlexiError)."""
    data = dict(data or {})
    cls = ERRORS.get(str(data.pop("name", "")), None)
    if cls is None:
        cls = next((c for c in ERRORS.values() if c.code == code), MultiFlexiError)
    return cls(message, data)
