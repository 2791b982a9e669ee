"""The wire format between multiflexid and its clients (see shared/PROTOCOL.md).

JSON-RPC 2.0 over a Unix stream socket, one compact UTF-8 JSON object per ``\\n``-terminated
line. This module has no I/O: it encodes and parses frames, builds messages, and validates
request parameters where they come off the wire (:class:`Params`), raising errors that
name the bad field.
"""

from __future__ import annotations

import builtins
import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import datetime as _datetime
from typing import Any, Literal, overload

from .errors import (
    InvalidInput,
    MultiFlexiError,
    ParseError,
    ProtocolError,
    from_wire,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "JSONRPC_VERSION",
    "PROTOCOL_VERSION",
    "Params",
    "encode",
    "error_from_response",
    "error_response",
    "message_kind",
    "notification",
    "parse_frame",
    "request",
    "response",
]

PROTOCOL_VERSION = 1
JSONRPC_VERSION = "2.0"
# Largest frame, in bytes without the terminating newline, either side accepts.
DEFAULT_MAX_FRAME = 1024 * 1024

Id = int | str | None


# --- framing ---------------------------------------------------------------------------------


def encode(message: Mapping[str, Any]) -> bytes:
    """One frame: compact UTF-8 JSON and ``\\n``.

    JSON escapes control characters inside strings, so the only newline is the terminator.
    Raises ``TypeError``/``ValueError`` for values JSON cannot carry (datetimes, NaN): the
    caller converts them (datetimes to ISO 8601 strings) first.
    """
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8") + b"\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_frame(line: bytes) -> dict[str, Any]:
    """Parse and check one received frame (with or without its newline).

    Returns the message, a request, notification or response. Raises :class:`ParseError`
    (-32700) when the bytes are not UTF-8 JSON, :class:`ProtocolError` (-32600) when the
    JSON is not a JSON-RPC 2.0 message; when the id of a bad request could be read it is
    in the exception's ``request_id``.
    """
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.strip():
        raise ParseError("empty frame: expected one JSON object per line")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"frame is not valid UTF-8 (byte 0x{line[exc.start]:02x} at offset {exc.start})"
        ) from None
    try:
        msg = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ParseError(f"frame is not valid JSON: {exc.msg} at column {exc.colno}") from None
    except ValueError as exc:  # NaN / Infinity
        raise ParseError(f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ParseError("frame is not valid JSON: nested too deeply") from None
    if isinstance(msg, list):
        raise ProtocolError("batch requests are not supported: send one JSON object per line")
    if not isinstance(msg, dict):
        raise ProtocolError(f"frame must be a JSON object, not {_kind(msg)}")
    _check_message(msg)
    return msg


def _check_message(msg: dict[str, Any]) -> None:
    rid = msg.get("id")
    known_id = rid if _valid_id(rid) else None

    def bad(message: str) -> ProtocolError:
        err = ProtocolError(message)
        err.request_id = known_id
        return err

    if "jsonrpc" not in msg:
        raise bad('missing "jsonrpc": "2.0"')
    if msg["jsonrpc"] != JSONRPC_VERSION:
        raise bad(f'"jsonrpc" must be "2.0", not {_show(msg["jsonrpc"])}')
    if "id" in msg and not _valid_id(rid):
        raise bad(f'"id" must be an integer, a string or null, not {_show(rid)}')
    if "method" in msg:
        method = msg["method"]
        if not isinstance(method, str) or not method:
            raise bad(f'"method" must be a non-empty string, not {_show(method)}')
        if "params" in msg and not isinstance(msg["params"], dict):
            if isinstance(msg["params"], list):
                raise bad('"params" must be an object: positional parameters are not supported')
            raise bad(f'"params" must be an object, not {_show(msg["params"])}')
        if "result" in msg or "error" in msg:
            raise bad('a request cannot carry "result" or "error"')
        return
    if "id" not in msg:
        raise bad('frame has neither "method" nor "id"')
    has_result, has_error = "result" in msg, "error" in msg
    if has_result == has_error:
        raise bad('a response must have exactly one of "result" and "error"')
    if has_error:
        error = msg["error"]
        if not isinstance(error, dict):
            raise bad(f'"error" must be an object, not {_show(error)}')
        code = error.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise bad(f'"error.code" must be an integer, not {_show(code)}')
        if not isinstance(error.get("message"), str):
            raise bad(f'"error.message" must be a string, not {_show(error.get("message"))}')


def _valid_id(value: Any) -> bool:
    return value is None or isinstance(value, str) or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def message_kind(msg: Mapping[str, Any]) -> Literal["request", "notification", "response"]:
    """What a parsed message is: a request has a method and an id, a notification a method
    and no id, a response an id and a result or an error."""
    if "method" in msg:
        return "request" if "id" in msg else "notification"
    return "response"


# --- builders --------------------------------------------------------------------------------


def request(id: int | str, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "id": id, "method": method, "params": dict(params or {})}


def response(id: Id, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "id": id, "result": result}


def error_response(id: Id, err: MultiFlexiError) -> dict[str, Any]:
    """The error as JSON-RPC: ``code``, one-line ``message``, ``data`` with the stable
    ``name`` (which decides the class a client rebuilds) and the error's own data."""
    return {
        "jsonrpc": JSONRPC_VERSION,
        "id": id,
        "error": {"code": err.code, "message": err.message, "data": {**err.data, "name": err.name}},
    }


def notification(method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "method": method, "params": dict(params or {})}


def error_from_response(msg: Mapping[str, Any]) -> MultiFlexiError:
    """Rebuild the :class:`MultiFlexiError` subclass an error response carries."""
    error = msg.get("error")
    if not isinstance(error, Mapping):
        return ProtocolError(f"not an error response: {_show(dict(msg))}")
    code = error.get("code")
    message = error.get("message")
    data = error.get("data")
    return from_wire(
        code if isinstance(code, int) and not isinstance(code, bool) else MultiFlexiError.code,
        message if isinstance(message, str) else "unknown error",
        dict(data) if isinstance(data, Mapping) else ({"detail": data} if data else None),
    )


# --- parameters ------------------------------------------------------------------------------

_MISSING: Any = object()
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Params:
    """A request's parameters, validated one by one with errors that name the field.

    Getters record which names were read; :meth:`done` then rejects any other name, so a
    typo (``limt``) is an error instead of being silently ignored. A JSON ``null`` counts
    as absent for the ``opt_*`` getters. Every error is :class:`InvalidInput` (-32602)
    with ``data.field``.
    """

    def __init__(self, params: Mapping[str, Any] | None, prefix: builtins.str = "params") -> None:
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InvalidInput(f"{prefix}: must be an object, not {_show(params)}",
                               {"field": prefix})
        self._params = params
        self._prefix = prefix
        self._seen: set[builtins.str] = set()

    def __contains__(self, name: object) -> builtins.bool:
        return isinstance(name, builtins.str) and self._params.get(name) is not None

    def _error(self, name: builtins.str, message: builtins.str) -> InvalidInput:
        field = f"{self._prefix}.{name}"
        return InvalidInput(f"{field}: {message}", {"field": field})

    def _get(self, name: builtins.str) -> Any:
        self._seen.add(name)
        return self._params.get(name)

    def _required(self, name: builtins.str, what: builtins.str) -> Any:
        self._seen.add(name)
        if name not in self._params:
            raise self._error(name, f"required ({what})")
        return self._params[name]

    # integers

    def int(
        self, name: builtins.str, *, min: builtins.int | None = None,
        max: builtins.int | None = None,
    ) -> builtins.int:
        return self._int(name, self._required(name, _int_what(min, max)), min, max)

    @overload
    def opt_int(
        self, name: builtins.str, default: builtins.int, *, min: builtins.int | None = ...,
        max: builtins.int | None = ...,
    ) -> builtins.int: ...

    @overload
    def opt_int(
        self, name: builtins.str, default: None = ..., *, min: builtins.int | None = ...,
        max: builtins.int | None = ...,
    ) -> builtins.int | None: ...

    def opt_int(
        self, name: builtins.str, default: builtins.int | None = None, *,
        min: builtins.int | None = None, max: builtins.int | None = None,
    ) -> builtins.int | None:
        value = self._get(name)
        if value is None:
            return default
        return self._int(name, value, min, max)

    def _int(
        self, name: builtins.str, value: Any, lo: builtins.int | None, hi: builtins.int | None
    ) -> builtins.int:
        if (
            not isinstance(value, builtins.int) or isinstance(value, builtins.bool)
            or (lo is not None and value < lo) or (hi is not None and value > hi)
        ):
            raise self._error(name, f"must be {_int_what(lo, hi)}, not {_show(value)}")
        return value

    # strings

    def str(
        self, name: builtins.str, *, allow_empty: builtins.bool = False,
        max_len: builtins.int | None = None,
    ) -> builtins.str:
        value = self._required(name, "a string")
        return self._str(name, value, allow_empty, max_len)

    @overload
    def opt_str(
        self, name: builtins.str, default: builtins.str, *, allow_empty: builtins.bool = ...,
        max_len: builtins.int | None = ...,
    ) -> builtins.str: ...

    @overload
    def opt_str(
        self, name: builtins.str, default: None = ..., *, allow_empty: builtins.bool = ...,
        max_len: builtins.int | None = ...,
    ) -> builtins.str | None: ...

    def opt_str(
        self, name: builtins.str, default: builtins.str | None = None, *,
        allow_empty: builtins.bool = False, max_len: builtins.int | None = None,
    ) -> builtins.str | None:
        value = self._get(name)
        if value is None:
            return default
        return self._str(name, value, allow_empty, max_len)

    def _str(
        self, name: builtins.str, value: Any, allow_empty: builtins.bool,
        max_len: builtins.int | None,
    ) -> builtins.str:
        if not isinstance(value, builtins.str):
            raise self._error(name, f"must be a string, not {_show(value)}")
        if not value and not allow_empty:
            raise self._error(name, "must not be empty")
        if max_len is not None and len(value) > max_len:
            raise self._error(name, f"must be at most {max_len} characters long")
        self._storable(name, value)
        return value

    def _storable(self, name: builtins.str, value: builtins.str) -> None:
        """Text no database can store: NUL and unpaired surrogates (JSON "\\ud800")."""
        bad = _UNSTORABLE.search(value)
        if bad is not None:
            what = ("a NUL character" if bad.group() == "\x00"
                    else f"an unpaired surrogate \\u{ord(bad.group()):04x}")
            raise self._error(name, f"must not contain {what}")

    # booleans

    def bool(self, name: builtins.str) -> builtins.bool:
        return self._bool(name, self._required(name, "true or false"))

    @overload
    def opt_bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool: ...

    @overload
    def opt_bool(
        self, name: builtins.str, default: None = ...
    ) -> builtins.bool | None: ...

    def opt_bool(
        self, name: builtins.str, default: builtins.bool | None = None
    ) -> builtins.bool | None:
        value = self._get(name)
        if value is None:
            return default
        return self._bool(name, value)

    def _bool(self, name: builtins.str, value: Any) -> builtins.bool:
        if not isinstance(value, builtins.bool):
            raise self._error(name, f"must be true or false, not {_show(value)}")
        return value

    # enumerations

    def enum(self, name: builtins.str, choices: Iterable[builtins.str]) -> builtins.str:
        choices = tuple(choices)
        return self._enum(name, self._required(name, _one_of(choices)), choices)

    def opt_enum(
        self, name: builtins.str, choices: Iterable[builtins.str],
        default: builtins.str | None = None,
    ) -> builtins.str | None:
        value = self._get(name)
        if value is None:
            return default
        return self._enum(name, value, tuple(choices))

    def _enum(
        self, name: builtins.str, value: Any, choices: tuple[builtins.str, ...]
    ) -> builtins.str:
        if not isinstance(value, builtins.str) or value not in choices:
            raise self._error(name, f"must be {_one_of(choices)}, not {_show(value)}")
        return value

    def enum_list(
        self, name: builtins.str, choices: Iterable[builtins.str]
    ) -> list[builtins.str]:
        """One of ``choices`` or a list of them (``"failed"``, ``["failed", "lost"]``);
        ``[]`` when absent."""
        choices = tuple(choices)
        value = self._get(name)
        if value is None:
            return []
        if isinstance(value, builtins.str):
            return [self._enum(name, value, choices)]
        if not isinstance(value, list):
            raise self._error(name, f"must be {_one_of(choices)} or a list of them, "
                                    f"not {_show(value)}")
        return [self._enum(f"{name}[{i}]", item, choices) for i, item in enumerate(value)]

    # collections

    def str_map(
        self, name: builtins.str, *, required: builtins.bool = False
    ) -> dict[builtins.str, builtins.str]:
        """An object of string values (``{"KEY": "value"}``); ``{}`` when absent."""
        value = self._required(name, "an object") if required else self._get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._error(
                name, f"must be an object of string values, not {_show(value)}"
            )
        out: dict[builtins.str, builtins.str] = {}
        for key, item in value.items():
            if not key:
                raise self._error(name, "keys must not be empty")
            self._storable(f"{name} key", key)
            if not isinstance(item, builtins.str):
                raise self._error(f"{name}.{key}", f"must be a string, not {_show(item)}")
            self._storable(f"{name}.{key}", item)
            out[key] = item
        return out

    def str_or_list_map(
        self, name: builtins.str
    ) -> dict[builtins.str, builtins.str | list[builtins.str]]:
        """An object whose values are strings or lists of strings (``{"url": ["a", "b"]}``);
        ``{}`` when absent."""
        value = self._get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._error(name, f"must be an object, not {_show(value)}")
        out: dict[builtins.str, builtins.str | list[builtins.str]] = {}
        for key, item in value.items():
            items = item if isinstance(item, list) else [item]
            for i, one in enumerate(items):
                if not isinstance(one, builtins.str):
                    where = f"{name}.{key}" + (f"[{i}]" if isinstance(item, list) else "")
                    raise self._error(where, f"must be a string, not {_show(one)}")
                self._storable(f"{name}.{key}", one)
            out[key] = list(items) if isinstance(item, list) else item
        return out

    def str_list(
        self, name: builtins.str, *, required: builtins.bool = False
    ) -> list[builtins.str]:
        """A list of strings; ``[]`` when absent."""
        items = self._list(name, required, "strings")
        for i, item in enumerate(items):
            if not isinstance(item, builtins.str):
                raise self._error(f"{name}[{i}]", f"must be a string, not {_show(item)}")
        return list(items)

    def int_list(
        self, name: builtins.str, *, required: builtins.bool = False,
        min: builtins.int | None = None,
    ) -> list[builtins.int]:
        """A list of integers (ids); ``[]`` when absent."""
        items = self._list(name, required, "integers")
        return [self._int(f"{name}[{i}]", item, min, None) for i, item in enumerate(items)]

    def _list(self, name: builtins.str, required: builtins.bool, of: builtins.str) -> list[Any]:
        value = self._required(name, f"a list of {of}") if required else self._get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._error(name, f"must be a list of {of}, not {_show(value)}")
        return value

    # references and nested objects

    def opt_ref(self, name: builtins.str) -> builtins.int | builtins.str | None:
        """An id (an integer) or a name (a string: a slug, a uuid); None when absent."""
        value = self._get(name)
        if value is None:
            return None
        if isinstance(value, builtins.str):
            return self._str(name, value, False, 255)
        if isinstance(value, builtins.int) and not isinstance(value, builtins.bool):
            return self._int(name, value, 1, None)
        raise self._error(name, f"must be an id (an integer) or a name (a string), "
                                f"not {_show(value)}")

    def opt_object(self, name: builtins.str) -> Params:
        """The parameters of a nested object (errors name ``params.<name>.<field>``); an
        empty one when absent. Call its :meth:`done` too."""
        value = self._get(name)
        if value is not None and not isinstance(value, Mapping):
            raise self._error(name, f"must be an object, not {_show(value)}")
        return Params(value, f"{self._prefix}.{name}")

    # date-times

    def datetime(self, name: builtins.str) -> _datetime:
        """An ISO 8601 date-time with a zone (``Z`` or ``+01:00``), as an aware datetime."""
        return self._datetime(name, self._required(name, _DT_WHAT))

    def opt_datetime(self, name: builtins.str) -> _datetime | None:
        value = self._get(name)
        return None if value is None else self._datetime(name, value)

    def _datetime(self, name: builtins.str, value: Any) -> _datetime:
        if isinstance(value, builtins.str):
            try:
                parsed = _datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if parsed.tzinfo is not None and parsed.utcoffset() is not None:
                    return parsed
        raise self._error(name, f"must be {_DT_WHAT}, not {_show(value)}")

    # the rest

    def exactly_one(self, *names: builtins.str) -> builtins.str:
        """The one of ``names`` that is given (not null); an error if none or several are."""
        given = [n for n in names if n in self]
        self._seen.update(names)
        if len(given) != 1:
            what = "none" if not given else ", ".join(given)
            raise InvalidInput(
                f"{self._prefix}: give exactly one of {', '.join(names)} (got {what})",
                {"field": self._prefix},
            )
        return given[0]

    def done(self) -> None:
        """Reject parameters no getter asked for."""
        unknown = sorted(builtins.str(k) for k in self._params if k not in self._seen)
        if unknown:
            expected = ", ".join(sorted(self._seen)) or "none"
            raise InvalidInput(
                f"{self._prefix}: unknown parameter{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(unknown)} (expected: {expected})",
                {"field": self._prefix, "unknown": unknown},
            )


_DT_WHAT = "an ISO 8601 date-time with a time zone (e.g. 2024-05-01T08:00:00Z)"


def _int_what(lo: int | None, hi: int | None) -> str:
    if lo is not None and hi is not None:
        return f"an integer between {lo} and {hi}"
    if lo is not None:
        return f"an integer of at least {lo}"
    if hi is not None:
        return f"an integer of at most {hi}"
    return "an integer"


def _one_of(choices: tuple[str, ...]) -> str:
    return "one of " + ", ".join(repr(c) for c in choices)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _show(value: Any) -> str:
    """A short rendering of a received value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    return _kind(value)
