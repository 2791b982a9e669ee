"""Configuration inheritance: the one place a job's environment is decided.

Layers, later wins::

    application defaults < the company's environment < assigned company credentials
        < run-template overrides < one-off overrides ("run now") < MULTIFLEXI_* variables

Each value remembers where it came from and whether it is secret. Values are checked
against the application's field types; required fields without a value are reported by
name so the job is ``blocked`` instead of launched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from multiflexi.secrecy import looks_secret

from .appdef import EnvFieldDef

MASK = "********"

SOURCE_DEFAULT = "app default"
SOURCE_COMPANY = "company environment"
SOURCE_TEMPLATE = "run template"
SOURCE_OVERRIDE = "one-off override"
SOURCE_MULTIFLEXI = "multiflexi"

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", re.I)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}|\{([A-Za-z0-9_]+)\}")


class ConfigError(ValueError):
    """A value does not fit its field's type; the message names the key."""


@dataclass(frozen=True)
class CredentialLayer:
    """The values of one credential assigned to the run template."""

    id: int
    name: str
    type_code: str
    values: Mapping[str, str]
    secret_keys: frozenset[str] = frozenset()

    @property
    def source(self) -> str:
        return f"credential #{self.id} {self.name!r} ({self.type_code})"


@dataclass(frozen=True)
class ResolvedValue:
    key: str
    value: str
    source: str
    secret: bool = False
    type: str = "string"
    # Sources this value replaced, earliest first (for --explain)
    overridden: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        return MASK if self.secret else self.value


@dataclass
class ResolvedEnv:
    values: dict[str, ResolvedValue] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.errors

    @property
    def blocked_reason(self) -> str | None:
        parts = []
        if self.missing:
            parts.append("required configuration missing: " + ", ".join(self.missing))
        if self.errors:
            parts.append("invalid configuration: " + "; ".join(self.errors))
        return "; ".join(parts) or None

    def environ(self) -> dict[str, str]:
        """The real values, for the child process only."""
        return {k: v.value for k, v in self.values.items()}

    def masked(self) -> dict[str, str]:
        return {k: v.shown for k, v in self.values.items()}

    def secrets(self) -> list[str]:
        """Secret values (non-empty), longest first, for masking output."""
        vals = {v.value for v in self.values.values() if v.secret and v.value}
        return sorted(vals, key=len, reverse=True)

    def explain(self, reveal: bool = False) -> list[dict[str, Any]]:
        return [
            {
                "key": v.key,
                "value": v.value if reveal else v.shown,
                "source": v.source,
                "secret": v.secret,
                "type": v.type,
                "overridden": list(v.overridden),
            }
            for v in sorted(self.values.values(), key=lambda v: v.key)
        ]


# --- type checks -----------------------------------------------------------------------------


def _options(options: Any) -> list[str]:
    if isinstance(options, dict):
        return [str(k) for k in options]
    if isinstance(options, list):
        return [str(o.get("value")) if isinstance(o, dict) else str(o) for o in options]
    return []


def to_text(value: Any) -> str:
    """How a JSON default is written into an environment variable."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        import json

        return json.dumps(value)
    return str(value)


def normalize(ftype: str, value: str, key: str, options: Any = None) -> str:
    """Check ``value`` against the field type and return its normal form.

    Booleans become ``1``/``0`` (as the original stores them). Raises ConfigError naming
    the key; an empty value passes (emptiness is the required-check's business).
    """
    text = value.strip() if ftype in ("integer", "float", "bool", "email", "url") else value
    if text == "" and ftype != "bool":
        return value
    if ftype == "bool":
        low = text.lower()
        if low in _TRUE:
            return "1"
        if low in _FALSE:
            return "0"
        raise ConfigError(f"{key}: {value!r} is not a boolean (use true/false, yes/no or 1/0)")
    if ftype == "integer":
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ConfigError(f"{key}: {value!r} is not an integer")
        return str(int(text))
    if ftype == "float":
        # Plain decimal notation only: Python's float() would also take "1_000", which
        # the application (PHP, shell...) would not read as a number.
        if not _FLOAT.fullmatch(text):
            raise ConfigError(f"{key}: {value!r} is not a number")
        number = float(text)
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: {value!r} is not a finite number")
        return text
    if ftype == "email":
        if not _EMAIL.match(text):
            raise ConfigError(f"{key}: {value!r} is not an e-mail address")
        return text
    if ftype == "url":
        parts = urlsplit(text)
        if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
            raise ConfigError(f"{key}: {value!r} is not a URL (scheme://host/...)")
        return text
    if ftype == "set":
        allowed = _options(options)
        if allowed and text not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of: {', '.join(allowed)}")
        return text
    return value


# --- resolution ------------------------------------------------------------------------------


def expand(template: str, values: Mapping[str, str]) -> tuple[str, set[str]]:
    """Replace ``{VAR}`` and ``${VAR}`` with known values; returns (text, keys used).

    Unknown placeholders stay as written, so a literal brace in a value survives.
    """
    used: set[str] = set()

    def sub(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(2)
        if key in values:
            used.add(key)
            return values[key]
        return m.group(0)

    return _PLACEHOLDER.sub(sub, template), used


def is_secret_key(key: str, declared: EnvFieldDef | None, marked: Iterable[str] = ()) -> bool:
    """A value is secret when its field says so, when it was marked secret, or — for a
    key the application does not declare — when its name says so (``*PASSWORD*``...)."""
    if key in marked:
        return True
    return declared.is_secret if declared is not None else looks_secret(key)


def resolve_environment(
    fields: Iterable[EnvFieldDef],
    credentials: Iterable[CredentialLayer] = (),
    company: Mapping[str, str] | None = None,
    company_secret_keys: Iterable[str] = (),
    template: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    injected: Mapping[str, str] | None = None,
    template_secret_keys: Iterable[str] = (),
    job_dir: str | None = None,
    override_secret_keys: Iterable[str] = (),
) -> ResolvedEnv:
    """Resolve a job's environment; see the module docstring for the order."""
    defs = {f.key: f for f in fields}
    secret_keys = ({k for k, f in defs.items() if f.is_secret} | set(template_secret_keys)
                   | set(override_secret_keys) | set(company_secret_keys))
    layered: dict[str, tuple[str, str, tuple[str, ...]]] = {}

    def put(key: str, value: str, source: str) -> None:
        before = layered.get(key)
        history = (*before[2], before[1]) if before else ()
        layered[key] = (value, source, history)

    for key, fdef in defs.items():
        if fdef.defval is not None:
            put(key, to_text(fdef.defval), SOURCE_DEFAULT)
    for key, value in (company or {}).items():
        put(key, value, SOURCE_COMPANY)
    for cred in credentials:
        secret_keys |= set(cred.secret_keys)
        for key, value in cred.values.items():
            put(key, value, cred.source)
    for key, value in (template or {}).items():
        put(key, value, SOURCE_TEMPLATE)
    for key, value in (overrides or {}).items():
        put(key, value, SOURCE_OVERRIDE)

    secret_keys |= {k for k in layered if k not in defs and looks_secret(k)}
    out = ResolvedEnv()
    plain = {**{k: v[0] for k, v in layered.items()}, **(injected or {})}
    for key, (value, source, history) in layered.items():
        known = defs.get(key)
        ftype = known.type if known else "string"
        expanded, used = expand(value, plain) if source == SOURCE_DEFAULT else (value, set())
        secret = key in secret_keys or bool(used & secret_keys)
        try:
            expanded = normalize(ftype, expanded, key, known.options if known else None)
        except ConfigError as exc:
            out.errors.append(_masked_error(str(exc), expanded) if secret else str(exc))
        out.values[key] = ResolvedValue(key, expanded, source, secret, ftype, history)
    for key, fdef in defs.items():
        if fdef.required and not out.values.get(key, ResolvedValue(key, "", "")).value.strip():
            out.missing.append(key)
    if job_dir and "RESULT_FILE" in out.values:
        rv = out.values["RESULT_FILE"]
        if rv.value and not PurePosixPath(rv.value).is_absolute():
            out.values["RESULT_FILE"] = ResolvedValue(
                rv.key, str(PurePosixPath(job_dir) / rv.value), rv.source, rv.secret, rv.type,
                rv.overridden,
            )
    for key, value in (injected or {}).items():
        before = out.values.get(key)
        history = (*before.overridden, before.source) if before else ()
        out.values[key] = ResolvedValue(key, value, SOURCE_MULTIFLEXI, False, "string", history)
    return out


def _masked_error(message: str, value: str) -> str:
    return message.replace(repr(value), repr(MASK)) if value else message


# Shorter secrets are not masked in output: masking every "1" would destroy the output
# and protect nothing.
MIN_MASKED_LENGTH = 3


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret value in ``text`` with the mask (longest secrets first)."""
    for secret in secrets:
        if len(secret) >= MIN_MASKED_LENGTH:
            text = text.replace(secret, MASK)
    return text
