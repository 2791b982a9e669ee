"""The action modules and their keys: which exist, which are required, which are secret,
and how a value given by an admin is checked (an error names the bad field).

Names are the original MultiFlexi's where it has them (WebHook, ChainRuntemplate,
Reschedule, Stop, CustomCommand, Github, RedmineIssue; keys ``uri``, ``rtid``, ``token``,
``url``, ``project_id``); ``Notify`` sends through Apprise URLs.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from multiflexi.errors import InvalidInput

MASK = "********"


@dataclass(frozen=True)
class Key:
    name: str
    kind: str  # text | url | int | header | argv | apprise
    description: str
    required: bool = False
    secret: bool = False
    repeatable: bool = False
    default: Any = None
    min: int | None = None
    max: int | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.kind, "description": self.description,
                "required": self.required, "secret": self.secret,
                "repeatable": self.repeatable, "default": self.default,
                "min": self.min, "max": self.max}


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    description: str
    keys: tuple[Key, ...]
    # False: `action test` only checks and says what it would do (it changes state).
    test_performs: bool = True

    def key(self, name: str) -> Key | None:
        return next((k for k in self.keys if k.name == name), None)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "keys": [k.describe() for k in self.keys], "test_performs": self.test_performs}


_TIMEOUT = Key("timeout", "int", "seconds to wait for an answer", default=10, min=1, max=300)

MODULES: dict[str, ModuleSpec] = {m.name: m for m in (
    ModuleSpec("WebHook", "POST the job's summary as JSON to a URL", (
        Key("uri", "url", "where to POST (http or https)", required=True),
        Key("secret", "text", "HMAC-SHA256 key: the body is signed in "
            "X-MultiFlexi-Signature", secret=True),
        Key("header", "header", "an extra header 'Name: value' (repeatable)", secret=True,
            repeatable=True),
        _TIMEOUT,
    )),
    ModuleSpec("Notify", "tell people through Apprise (mail, Teams, Slack, Telegram, Matrix, "
               "ntfy...)", (
        Key("url", "apprise", "an Apprise URL, e.g. mailtos://user:pass@smtp.example?"
            "to=admin@example.com (repeatable)", required=True, secret=True,
            repeatable=True),
    )),
    ModuleSpec("ChainRuntemplate", "queue another template of the same company", (
        Key("rtid", "int", "the run template to queue", required=True, min=1),
    ), test_performs=False),
    ModuleSpec("Reschedule", "run the template again after a delay", (
        Key("delay", "int", "seconds to wait", required=True, min=0, max=31 * 86400),
    ), test_performs=False),
    ModuleSpec("Stop", "disable the template (the reason is shown with it)", (
        Key("reason", "text", "what the template shows as the reason"),
    ), test_performs=False),
    ModuleSpec("CustomCommand", "run a command (no shell) with the summary in MULTIFLEXI_* "
               "variables and as JSON on its stdin", (
        Key("command", "argv", "the command line, split like a shell would (no shell "
            "runs it)", required=True),
        Key("timeout", "int", "seconds before it is stopped", default=60, min=1,
            max=3600),
    )),
    ModuleSpec("Github", "open a GitHub issue with the summary", (
        Key("token", "text", "a GitHub token allowed to open issues", required=True,
            secret=True),
        Key("repository", "text", "owner/name (default: the application's GitHub "
            "homepage)"),
        Key("api_url", "url", "the API (GitHub Enterprise)", default="https://api.github.com"),
        _TIMEOUT,
    )),
    ModuleSpec("RedmineIssue", "open a Redmine issue with the summary", (
        Key("url", "url", "the Redmine server, e.g. https://redmine.example", required=True),
        Key("token", "text", "a Redmine API key", required=True, secret=True),
        Key("project_id", "text", "the project's id or identifier", required=True),
        Key("tracker_id", "int", "the tracker of the new issue", min=1),
        _TIMEOUT,
    )),
)}


def module_spec(name: str) -> ModuleSpec:
    spec = MODULES.get(name)
    if spec is None:
        raise InvalidInput(f"module: {name!r} is not one of {', '.join(MODULES)}",
                           {"field": "module"})
    return spec


def _bad(key: str, message: str) -> InvalidInput:
    return InvalidInput(f"{key}: {message}", {"field": key})


def _http_url(key: str, value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _bad(key, f"{value!r} is not an http:// or https:// URL")
    return value.strip()


def _check_one(k: Key, value: Any) -> Any:
    if not isinstance(value, str):
        if k.kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        else:
            raise _bad(k.name, f"must be text, not {type(value).__name__}")
    text = value.strip()
    shown = MASK if k.secret else repr(value)
    if k.kind == "int":
        try:
            number = int(text)
        except ValueError:
            raise _bad(k.name, f"{shown} is not a whole number") from None
        if (k.min is not None and number < k.min) or (k.max is not None and number > k.max):
            bounds = f"between {k.min} and {k.max}" if k.max is not None else f"at least {k.min}"
            raise _bad(k.name, f"must be {bounds}, not {number}")
        return number
    if not text:
        raise _bad(k.name, "must not be empty")
    if k.kind == "url":
        return _http_url(k.name, text)
    if k.kind == "header":
        name, sep, rest = text.partition(":")
        if not sep or not name.strip() or any(c in name for c in " \t\r\n") \
                or "\n" in rest or "\r" in rest:
            raise _bad(k.name, "write a header as 'Name: value'")
        return f"{name.strip()}: {rest.strip()}"
    if k.kind == "argv":
        try:
            argv = shlex.split(text)
        except ValueError as exc:
            raise _bad(k.name, f"cannot split the command line: {exc}") from None
        if not argv:
            raise _bad(k.name, "must not be empty")
        return text
    if k.kind == "apprise":
        import apprise

        if not apprise.Apprise().add(text):
            scheme = text.split("://", 1)[0] if "://" in text else text[:0]
            raise _bad(k.name, f"not a valid Apprise URL ({scheme or 'no'}:// scheme; see "
                               "https://github.com/caronc/apprise/wiki)")
        return text
    return text


def validate(module: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The module's configuration from what an admin gave (``KEY: text`` or, for a
    repeatable key, a list), typed and checked; defaults filled in."""
    spec = module_spec(module)
    out: dict[str, Any] = {}
    for name, value in values.items():
        k = spec.key(name)
        if k is None:
            raise _bad(name, f"not a key of {spec.name} (keys: "
                             f"{', '.join(x.name for x in spec.keys) or 'none'})")
        items = value if isinstance(value, (list, tuple)) else [value]
        if len(items) > 1 and not k.repeatable:
            raise _bad(name, f"given {len(items)} times; {spec.name} takes it once")
        checked = [_check_one(k, v) for v in items]
        out[name] = checked if k.repeatable else checked[0]
    for k in spec.keys:
        if k.name not in out or out[k.name] in ([], None):
            if k.required:
                raise _bad(k.name, f"required by {spec.name} ({k.description})")
            if k.default is not None:
                out[k.name] = k.default
    return out


def masked(module: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """What listings show: secret values masked (an Apprise URL keeps its scheme)."""
    spec = MODULES.get(module)
    out: dict[str, Any] = {}
    for name, value in config.items():
        k = spec.key(name) if spec else None
        if k is None or not k.secret:
            out[name] = value
        elif isinstance(value, list):
            out[name] = [_mask_one(k, v) for v in value]
        else:
            out[name] = _mask_one(k, value)
    return out


def _mask_one(k: Key, value: Any) -> str:
    text = str(value)
    if k.kind == "apprise" and "://" in text:
        return text.split("://", 1)[0] + "://" + MASK
    if k.kind == "header" and ":" in text:
        return text.split(":", 1)[0] + ": " + MASK
    return MASK


def secret_values(module: str, config: Mapping[str, Any]) -> list[str]:
    """Every secret value of a configuration (to mask wherever a result is shown)."""
    spec = MODULES.get(module)
    found: list[str] = []
    for name, value in config.items():
        k = spec.key(name) if spec else None
        if k is None or not k.secret:
            continue
        for v in value if isinstance(value, list) else [value]:
            text = str(v)
            found.append(text)
            if k.kind == "header" and ":" in text:
                found.append(text.split(":", 1)[1].strip())
            if k.kind == "apprise" and "://" in text:
                found.append(text.split("://", 1)[1])
    return [v for v in found if len(v) >= 3]
