"""Checks of configuration values typed in the activation wizard, before they are sent.

They mirror the daemon's type checks (which run again on ``runtemplate.create``), so an
admin hears about a bad value on the field itself, not after the last step.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

TRUE = {"1", "true", "yes", "on", "y", "t"}
FALSE = {"0", "false", "no", "off", "n", "f"}
_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def options_of(options: Any) -> list[tuple[str, str]]:
    """``(value, label)`` pairs of a ``set`` field's options (dict, list or list of dicts)."""
    if isinstance(options, dict):
        return [(str(k), str(v if not isinstance(v, dict) else v.get("en") or k))
                for k, v in options.items()]
    if isinstance(options, list):
        out = []
        for o in options:
            if isinstance(o, dict):
                value = str(o.get("value"))
                out.append((value, str(o.get("label") or value)))
            else:
                out.append((str(o), str(o)))
        return out
    return []


def default_text(field: dict[str, Any]) -> str:
    """The field's default as the text an input shows (booleans as true/false)."""
    value = field.get("default")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if field.get("type") == "bool":
        low = str(value).strip().lower()
        if low in TRUE:
            return "true"
        if low in FALSE or low == "":
            return "false"
    return str(value)


def as_text(field: dict[str, Any], value: Any) -> str:
    """A stored value as its input shows it (booleans as true/false; None as empty)."""
    return default_text({**field, "default": value})


def check(field: dict[str, Any], value: str) -> str | None:
    """What is wrong with ``value`` for ``field`` (None when fine). Emptiness is checked by
    :func:`missing`, not here."""
    ftype = field.get("type") or "string"
    text = value.strip()
    if text == "":
        return None
    if ftype == "bool" and text.lower() not in TRUE | FALSE:
        return "not a boolean: use true or false"
    if ftype == "integer" and not _INTEGER.fullmatch(text):
        return "not a whole number"
    if ftype == "float" and not _FLOAT.fullmatch(text):
        return "not a number (e.g. 1.5)"
    if ftype == "email" and not _EMAIL.match(text):
        return "not an e-mail address (name@example.com)"
    if ftype == "url":
        parts = urlsplit(text)
        if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
            return "not a URL (scheme://host/...)"
    if ftype == "set":
        allowed = [v for v, _label in options_of(field.get("options"))]
        if allowed and text not in allowed:
            return "not one of: " + ", ".join(allowed)
    return None


def missing(field: dict[str, Any], value: str) -> bool:
    return bool(field.get("required")) and not value.strip()


def config_to_send(fields: list[dict[str, Any]], values: dict[str, str]) -> dict[str, str]:
    """The template's configuration: only values that differ from the app's defaults, so a
    template keeps following the app where the admin accepted the default."""
    out: dict[str, str] = {}
    for field in fields:
        key = field["key"]
        value = values.get(key, "")
        if value == default_text(field):
            continue
        if value == "" and field.get("default") in (None, ""):
            continue
        out[key] = value
    return out


def config_change(field: dict[str, Any] | None, value: str, stored: bool) -> str | None:
    """What saving an edited configuration value does: ``"set"`` (store it on the
    template), ``"unset"`` (remove the stored value: the template follows the application's
    default again) or None (nothing). As in :func:`config_to_send`, a value equal to the
    default is not stored; ``field`` None: a key the application does not declare."""
    if value != (default_text(field) if field is not None else ""):
        return "set"
    return "unset" if stored else None
