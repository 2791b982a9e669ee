"""Upstream application JSON (schema 3.4 and legacy 2.1): parse, validate, export.

``parse_app(text, source)`` returns an :class:`AppDefinition` or raises
:class:`AppJsonError` listing every problem as ``<json path>: <message>`` (invalid JSON as
``file:line:column``). Nothing here touches a database: importing writes nothing unless
the whole file parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import ValidationError

from multiflexi import schemas

from .appdef import (
    ENV_TYPES,
    LEGACY_ENV_TYPES,
    AppDefinition,
    ArtifactDef,
    EnvFieldDef,
    ExitCodeDef,
    Localized,
)

SCHEMA_URL = (
    "https://raw.githubusercontent.com/VitexSoftware/php-vitexsoftware-multiflexi-core/"
    "refs/heads/main/schema/application.json"
)
SCHEMA_VERSION = "3.4.0"
# Key in ``extra`` for how upstream spelled things (never an upstream key: they have no "@")
HINTS = "@spelling"

# Keys we map onto our model; everything else at the top level is kept in ``extra``.
_MAPPED = {
    "name", "title", "description", "executable", "cmdparamsTemplate", "cmdparams", "ociimage",
    "version", "homepage", "image", "uuid", "requirements", "tags", "topics", "environment",
    "artifacts", "exitCodes", "exitcodes",
}
# Keys either schema knows that we keep verbatim for export and never read: metadata that
# does not change how a job runs. What the schema says against them is a warning, never a
# refusal (real files add keys upstream's own schema does not list, e.g. events.listens).
_METADATA = {
    "author", "license", "category", "produces", "consumes", "events", "kubernetes", "setup",
    "deploy", "package", "multiflexi", "repository",
}
# Top-level keys either schema knows; others are kept but reported as warnings.
_KNOWN = _MAPPED | _METADATA | {"$schema", "schemaVersion"}
_KEPT_AS_WRITTEN = "kept as written (metadata, not used to run jobs)"
# The largest exit code the database keeps (a 64-bit integer column). Upstream allows any
# non-negative integer; those above 255 are kept, with a warning, as meanings only.
MAX_EXIT_CODE = 2**63 - 1
_FIELD_KEYS = {"type", "category", "description", "hint", "defval", "required", "options"}


class AppJsonError(ValueError):
    """An application definition that cannot be imported; ``problems`` lists each one
    (``warnings``: what would only have been reported)."""

    def __init__(self, source: str, problems: list[str],
                 warnings: list[str] | None = None) -> None:
        self.source = source
        self.problems = problems
        self.warnings = warnings or []
        super().__init__(f"{source}: " + "; ".join(problems))


# --- JSON reading ----------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dups = []
    for key, value in pairs:
        if key in out:
            dups.append(key)
        out[key] = value
    if dups:
        out["\0duplicates"] = dups
    return out


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _text_problem(text: str) -> str | None:
    """Text no database can store: NUL characters and unpaired surrogates (\\ud800)."""
    bad = _UNSTORABLE.search(text)
    if bad is None:
        return None
    if bad.group() == "\x00":
        return "contains a NUL character (\\u0000)"
    return f"contains invalid Unicode (an unpaired surrogate \\u{ord(bad.group()):04x})"


def _collect_duplicates(node: Any, path: str, problems: list[str]) -> None:
    """Duplicate keys and unstorable text anywhere in the document."""
    if isinstance(node, dict):
        for key in node.pop("\0duplicates", []):
            problems.append(f"{_join(path, key)}: duplicate key (a later value would win)")
        for key, value in node.items():
            why = _text_problem(key)
            if why:
                problems.append(f"{_join(path, key)}: the key {why}")
            _collect_duplicates(value, _join(path, key), problems)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _collect_duplicates(value, f"{path}[{i}]", problems)
    elif isinstance(node, str):
        why = _text_problem(node)
        if why:
            problems.append(f"{path}: {why}")


def load_json(text: str, source: str) -> Any:
    """Parse JSON text; errors name ``source:line:column``; duplicate keys are errors."""
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        line, col, msg = exc.lineno, exc.colno, exc.msg
        comma = _trailing_comma(exc.doc, exc.pos)
        if comma is not None:  # point at the comma, not at the bracket after it
            line = exc.doc.count("\n", 0, comma) + 1
            col = comma - exc.doc.rfind("\n", 0, comma)
            msg = f"trailing comma before {exc.doc[exc.pos]!r}"
        raise AppJsonError(f"{source}:{line}:{col}", [f"invalid JSON: {msg}"]) from None
    problems: list[str] = []
    _collect_duplicates(data, "$", problems)
    if problems:
        raise AppJsonError(source, problems)
    return data


def _trailing_comma(doc: str, pos: int) -> int | None:
    """Offset of the comma when the error at ``pos`` is a ``,`` right before ``}`` / ``]``."""
    if pos >= len(doc) or doc[pos] not in "}]":
        return None
    before = doc[:pos].rstrip()
    return len(before) - 1 if before.endswith(",") else None


_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENT.match(str(key)):
        return f"{path}.{key}"
    text = str(key)  # escaped when it holds what a terminal or database cannot take
    return f"{path}[{json.dumps(text, ensure_ascii=bool(_UNSTORABLE.search(text)))}]"


def json_path(parts: Iterable[Any]) -> str:
    path = "$"
    for part in parts:
        path = _join(path, part)
    return path


_PATH = re.compile(r'\$(?:\.[A-Za-z_$][A-Za-z0-9_$]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*')


def split_problem(problem: str) -> tuple[str, str]:
    """``(json path, message)`` of a ``<json path>: <message>`` line made here."""
    path = _PATH.match(problem)
    if path is None or not problem.startswith(": ", path.end()):
        return "$", problem
    return path.group(), problem[path.end() + 2:]


def _schema_errors(validator: Draft7Validator, data: Any) -> list[ValidationError]:
    return sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.path])


def schema_problems(validator: Draft7Validator, data: Any) -> list[str]:
    """Every schema violation as ``<json path>: <message>``, in document order."""
    return [line for err in _schema_errors(validator, data) for line in _describe(err)]


_NOT_A_CODE = "exit codes must be non-negative whole numbers"


def _describe(err: ValidationError) -> list[str]:
    path = json_path(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    patterns = list(schema.get("patternProperties", {}))
    extras = []
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        known = schema.get("properties", {})
        extras = [k for k in err.instance
                  if k not in known and not any(re.search(p, k) for p in patterns)]
    if extras:  # one line per offending key, saying what keys must look like
        if patterns == ["^[0-9]+$"]:
            return [f"{_join(path, k)}: {_NOT_A_CODE}" for k in extras]
        if patterns:
            return [f"{_join(path, k)}: key does not match {' or '.join(patterns)}"
                    for k in extras]
        return [f"{_join(path, k)}: not a key the schema knows (known: {', '.join(known)})"
                for k in extras]
    return [_describe_one(err, path)]


def _describe_one(err: ValidationError, path: str) -> str:
    if err.validator == "required":
        missing = re.match(r"'(.+)' is a required property", err.message)
        if missing:
            return f"{_join(path, missing.group(1))}: required key is missing"
    if err.validator == "oneOf" and _is_localized_schema(err.schema):
        return (f"{path}: must be a string or an object mapping language codes "
                f"(en, cs, ...) to strings, not {_short(err.instance)}")
    if err.validator == "enum":
        allowed = ", ".join(str(v) for v in err.validator_value)
        return f"{path}: {err.instance!r} is not one of: {allowed}"
    if err.validator == "format":
        return f"{path}: {err.instance!r} is not a valid {err.validator_value}"
    return f"{path}: {err.message}"


def _is_localized_schema(schema: Any) -> bool:
    """Whether ``schema`` is (the resolved form of) upstream's ``localizedString``."""
    if not isinstance(schema, dict):
        return False
    if schema.get("$ref") == "#/$defs/localizedString":
        return True
    defs = schemas.load(schemas.APPLICATION).get("$defs", {})
    return bool(schema) and schema.get("oneOf") == defs.get("localizedString", {}).get("oneOf")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# --- format detection and validation ---------------------------------------------------------


def detect_format(data: dict[str, Any]) -> str:
    """"3.4" for current files, "2.1" for legacy ones (no schemaVersion 3.x)."""
    version = str(data.get("schemaVersion") or "")
    if version.startswith("3"):
        return "3.4"
    if version:
        return "2.1" if version.startswith("2") else "3.4"
    schema = str(data.get("$schema") or "")
    if schema.endswith("schema/application.json"):
        return "3.4"
    return "2.1"


_validators: dict[str, Draft7Validator] = {}


_ENV_KEY = "^[A-Z0-9_]+$"


def _validator(fmt: str) -> Draft7Validator:
    if fmt not in _validators:
        name = schemas.APPLICATION if fmt == "3.4" else schemas.APPLICATION_LEGACY
        schema = json.loads(json.dumps(schemas.load(name)))
        # Upstream only describes fields whose key matches the pattern; a key like
        # "api_url" would escape every check of its field. Check all fields alike.
        env = schema["properties"]["environment"]
        env["additionalProperties"] = env["patternProperties"][_ENV_KEY]
        _validators[fmt] = Draft7Validator(schema, format_checker=FormatChecker())
    return _validators[fmt]


def _normalize_types(data: dict[str, Any]) -> dict[str, str]:
    """Rewrite legacy environment type names in place; returns key -> original name."""
    rewritten: dict[str, str] = {}
    env = data.get("environment")
    if isinstance(env, dict):
        for key, spec in env.items():
            if isinstance(spec, dict) and isinstance(spec.get("type"), str):
                legacy = spec["type"]
                if legacy in LEGACY_ENV_TYPES:
                    spec["type"] = LEGACY_ENV_TYPES[legacy]
                    rewritten[key] = legacy
    return rewritten


def validate_app(data: Any) -> tuple[list[str], list[str]]:
    """(errors, warnings) for a parsed app definition; empty errors means importable."""
    if not isinstance(data, dict):
        return [f"$: an application definition must be a JSON object, not {_kind(data)}"], []
    data = json.loads(json.dumps(data))  # private copy: normalization must not leak
    fmt = detect_format(data)
    warnings = []
    for key, legacy in _normalize_types(data).items():
        warnings.append(
            f"$.environment.{key}.type: legacy type {legacy!r} read as "
            f"{LEGACY_ENV_TYPES[legacy]!r}"
        )
    if fmt == "3.4" and "$schema" not in data:
        data["$schema"] = SCHEMA_URL  # the original accepts files without it
        warnings.append("$.$schema: missing; assumed the 3.4 application schema")
    errors = []
    for err in _schema_errors(_validator(fmt), data):
        if err.absolute_path and err.absolute_path[0] in _METADATA:
            warnings.extend(f"{line}; {_KEPT_AS_WRITTEN}" for line in _describe(err))
        else:
            errors.extend(_describe(err))
    errors.extend(_semantic_problems(data, fmt))
    code_errors, code_warnings = _exit_code_problems(data)
    errors.extend(code_errors)
    warnings.extend(code_warnings)
    env = data.get("environment")
    for key in env if isinstance(env, dict) else ():
        if not re.match(_ENV_KEY, key):
            warnings.append(f"{_join('$.environment', key)}: not an upper-case name "
                            f"({_ENV_KEY}); kept as written")
    for key in data:
        if key not in _KNOWN:
            warnings.append(f"{_join('$', key)}: unknown top-level key (kept, not used)")
    if "exitcodes" in data and "exitCodes" not in data:
        warnings.append("$.exitcodes: lower-case spelling read as exitCodes")
    return sorted(set(errors), key=errors.index), warnings


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _semantic_problems(data: dict[str, Any], fmt: str) -> list[str]:
    """What the schemas let through but an importer must refuse."""
    out = []
    # Lists the other format's schema has and this one's does not check: both are read.
    for key in (("topics",) if fmt == "3.4" else ("tags",)):
        value = data.get(key)
        if key in data and not (isinstance(value, list)
                                and all(isinstance(v, str) for v in value)):
            out.append(f"$.{key}: must be an array of strings, not {_kind(value)}")
    env = data.get("environment")
    if isinstance(env, dict):
        for key, spec in env.items():
            path = _join("$.environment", key)
            if not key or "=" in key or "\0" in key:
                out.append(f"{path}: not usable as an environment variable name")
            if not isinstance(spec, dict):
                out.append(f"{path}: must be an object, not {_kind(spec)}")
                continue
            ftype = spec.get("type", "string")
            if not isinstance(ftype, str) or ftype not in ENV_TYPES:
                out.append(f"{path}.type: {ftype!r} is not one of: {', '.join(ENV_TYPES)}")
    out.extend(_too_long(data))
    executable = data.get("executable")
    if isinstance(executable, str) and not executable.strip():
        out.append("$.executable: must not be empty")
    name = data.get("name")
    if isinstance(name, str) and not name.strip():
        out.append("$.name: must not be empty")
    if fmt == "2.1" and "uuid" in data and isinstance(data["uuid"], str):
        if not _is_uuid(data["uuid"]):
            out.append(f"$.uuid: {data['uuid']!r} is not a valid uuid")
    # Keys of the other format (or of no schema) that still make the command line.
    for key in ("cmdparams", "cmdparamsTemplate"):
        if key in data and not isinstance(data[key], str):
            out.append(f"$.{key}: must be a string, not {_kind(data[key])}")
    arts = data.get("artifacts")
    if isinstance(arts, list):
        for i, art in enumerate(arts):
            if isinstance(art, dict) and isinstance(art.get("path"), str):
                pattern = re.sub(r"\$?\{[A-Z0-9_]+\}", "x", art["path"])
                try:
                    re.compile(pattern)
                except re.error as exc:
                    out.append(f"$.artifacts[{i}].path: not a valid regular expression: {exc}")
    return out


def _exit_code_problems(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(errors, warnings) of ``exitCodes`` (or the lower-case ``exitcodes``).

    Upstream allows any non-negative integer as a code; real files declare HTTP-like ones.
    They are kept, with a warning: no process can exit with them.
    """
    key = "exitCodes" if "exitCodes" in data else "exitcodes"
    codes = data.get(key)
    if codes is None:
        return [], []
    if not isinstance(codes, dict):  # not in the 2.1 schema
        return [f"$.{key}: must be an object of exit codes, not {_kind(codes)}"], []
    errors, warnings = [], []
    seen: dict[int, str] = {}
    for code, meaning in codes.items():
        path = _join(f"$.{key}", code)
        if not re.fullmatch(r"[0-9]+", code):
            errors.append(f"{path}: {_NOT_A_CODE}")
        elif int(code) > MAX_EXIT_CODE:
            errors.append(f"{path}: too large to keep (at most {MAX_EXIT_CODE})")
        elif int(code) in seen:
            errors.append(f"{path}: the same exit code as {json.dumps(seen[int(code)])}")
        else:
            seen[int(code)] = code
            if int(code) > 255:
                warnings.append(
                    f"{path}: {code} can never be a process exit status (those are 0-255): "
                    f"a process that exits with {code} ends with {int(code) % 256}")
        # Either {description, severity, retry} or (the lower-case form) just the
        # description, a string or an object of languages.
        plain = isinstance(meaning, dict) and "description" not in meaning and all(
            isinstance(v, str) for v in meaning.values())
        if not (isinstance(meaning, str) or plain
                or (isinstance(meaning, dict) and "description" in meaning)):
            errors.append(f"{path}: must be an object with a description, or the "
                          f"description itself, not {_kind(meaning)}")
    return errors, warnings


# The longest values the database keeps (column sizes in multiflexid/store/orm.py).
_MAX_TOP = {"name": 255, "title": 255, "uuid": 64, "executable": 1024, "ociimage": 512,
            "version": 64, "homepage": 1024}
_MAX_FIELD = {"category": 32}
_MAX_ARTIFACT = {"name": 255, "type": 64}
_MAX_KEY = 255


def _too_long(data: dict[str, Any]) -> list[str]:
    out = []

    def check(path: str, value: Any, limit: int) -> None:
        text = localized(value)[0] if isinstance(value, (str, dict)) else ""
        if len(text) > limit:
            out.append(f"{path}: longer than {limit} characters ({len(text)})")

    for key, limit in _MAX_TOP.items():
        check(_join("$", key), data.get(key), limit)
    env = data.get("environment")
    for key, spec in env.items() if isinstance(env, dict) else ():
        if len(key) > _MAX_KEY:
            out.append(f"$.environment.{key[:20]}...: key longer than {_MAX_KEY} characters")
        for attr, limit in _MAX_FIELD.items():
            if isinstance(spec, dict):
                check(_join(_join("$.environment", key), attr), spec.get(attr), limit)
    arts = data.get("artifacts")
    for i, art in enumerate(arts if isinstance(arts, list) else []):
        for attr, limit in _MAX_ARTIFACT.items():
            if isinstance(art, dict):
                check(f"$.artifacts[{i}].{attr}", art.get(attr), limit)
    return out


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


# --- building the definition -----------------------------------------------------------------


def localized(value: Any) -> tuple[str, Localized]:
    """(main text, all languages) of a localizable value: English first, else the first."""
    if value is None:
        return "", {}
    if isinstance(value, dict):
        langs = {str(k): str(v) for k, v in value.items()}
        main = langs.get("en") or next(iter(langs.values()), "")
        return main, langs
    return str(value), {}


def _loc(target: dict[str, Localized], key: str, value: Any) -> str:
    main, langs = localized(value)
    if langs:
        target[key] = langs
    return main


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def parse_app(text: str, source: str = "<input>") -> tuple[AppDefinition, list[str]]:
    """Parse and validate one app definition; (definition, warnings) or AppJsonError."""
    data = load_json(text, source)
    return app_from_data(data, source)


def app_from_data(data: Any, source: str = "<input>") -> tuple[AppDefinition, list[str]]:
    errors, warnings = validate_app(data)
    if errors:
        raise AppJsonError(source, errors, warnings)
    data = json.loads(json.dumps(data))
    _normalize_types(data)
    fmt = detect_format(data)
    loc: dict[str, Localized] = {}
    name = _loc(loc, "name", data["name"])
    description = _loc(loc, "description", data.get("description"))
    title = _loc(loc, "title", data["title"]) if "title" in data else None
    cmd_template = data.get("cmdparamsTemplate")
    cmd_legacy = data.get("cmdparams")
    extra = {k: v for k, v in data.items() if k not in _MAPPED}
    if cmd_template is not None and cmd_legacy is not None:
        extra["cmdparams"] = cmd_legacy  # both given: the template wins, keep the other
    tags: list[str] = []
    for tag in [*(data.get("tags") or []), *(data.get("topics") or [])]:
        if tag not in tags:
            tags.append(str(tag))
    # How upstream spelled things, so that export writes them back the same way
    hints = {
        "topics": "topics" in data,
        "tags": "tags" in data,
        "cmdparams": "cmdparamsTemplate" not in data and "cmdparams" in data,
    }
    extra[HINTS] = {k: v for k, v in hints.items() if v}
    app = AppDefinition(
        name=name.strip(),
        executable=str(data["executable"]).strip(),
        description=description,
        uuid=_opt_str(data.get("uuid")) or None,
        title=title,
        cmdparams=str(cmd_template if cmd_template is not None else (cmd_legacy or "")),
        ociimage=_opt_str(data.get("ociimage")) or None,
        version=_opt_str(data.get("version")),
        homepage=_opt_str(data.get("homepage")),
        image=_opt_str(data.get("image")),
        requirements=[str(r) for r in data.get("requirements") or []],
        tags=tags,
        localized=loc,
        extra=extra,
        source_format=fmt,
        env_fields=[_env_field(k, v) for k, v in (data.get("environment") or {}).items()],
        artifacts=[_artifact(a) for a in data.get("artifacts") or []],
        exit_codes=_exit_codes(data.get("exitCodes", data.get("exitcodes")) or {}),
    )
    return app, warnings


def _env_field(key: str, spec: dict[str, Any]) -> EnvFieldDef:
    loc: dict[str, Localized] = {}
    description = _loc(loc, "description", spec.get("description"))
    hint = _loc(loc, "hint", spec["hint"]) if "hint" in spec else None
    ftype = spec.get("type", "string")
    extra = {k: v for k, v in spec.items() if k not in _FIELD_KEYS}
    if "type" not in spec:
        extra[HINTS] = {"notype": True}
    return EnvFieldDef(
        key=key,
        type=ftype,
        category=spec.get("category"),
        description=description,
        hint=hint,
        defval=spec.get("defval"),
        required=bool(spec.get("required", False)),
        secret=bool(spec.get("secret", False)) or ftype == "password",
        options=spec.get("options"),
        localized=loc,
        extra=extra,
    )


def _artifact(spec: dict[str, Any]) -> ArtifactDef:
    loc: dict[str, Localized] = {}
    name = _loc(loc, "name", spec.get("name"))
    description = _loc(loc, "description", spec["description"]) if "description" in spec else None
    return ArtifactDef(
        name=name, path=str(spec.get("path", "")), type=str(spec.get("type", "file")),
        description=description, localized=loc,
    )


def _exit_codes(spec: dict[str, Any]) -> list[ExitCodeDef]:
    out = []
    for code, meaning in spec.items():
        loc: dict[str, Localized] = {}
        if isinstance(meaning, dict) and "description" in meaning:
            description = _loc(loc, "description", meaning["description"])
            severity = str(meaning.get("severity", "success" if int(code) == 0 else "error"))
            retry = bool(meaning.get("retry", False))
        else:  # lower-case "exitcodes" files: the value is the (localized) description
            description = _loc(loc, "description", meaning)
            severity = "success" if int(code) == 0 else "error"
            retry = False
        out.append(ExitCodeDef(int(code), description, severity, retry, loc))
    return sorted(out, key=lambda e: e.code)


# --- export ----------------------------------------------------------------------------------


def _unloc(main: str | None, langs: Localized | None) -> Any:
    if langs:
        return dict(langs)
    return main


def export_app(app: AppDefinition) -> dict[str, Any]:
    """The upstream JSON document of ``app``; importing it gives the same definition."""
    extra = dict(app.extra)
    hints = extra.pop(HINTS, {})
    legacy_cmd = hints.get("cmdparams", False)
    legacy_topics = hints.get("topics", False)
    both_tags = legacy_topics and hints.get("tags", False)
    doc: dict[str, Any] = {}
    doc["$schema"] = extra.pop("$schema", SCHEMA_URL if app.source_format == "3.4" else None)
    if doc["$schema"] is None:
        del doc["$schema"]
    doc["name"] = _unloc(app.name, app.localized.get("name"))
    if app.title is not None:
        doc["title"] = _unloc(app.title, app.localized.get("title"))
    doc["description"] = _unloc(app.description, app.localized.get("description"))
    if app.uuid:
        doc["uuid"] = app.uuid
    if app.version is not None:
        doc["version"] = app.version
    doc["executable"] = app.executable
    if legacy_cmd:
        doc["cmdparams"] = app.cmdparams
    else:
        doc["cmdparamsTemplate"] = app.cmdparams
        if "cmdparams" in extra:
            doc["cmdparams"] = extra.pop("cmdparams")
    for key, value in (("ociimage", app.ociimage), ("homepage", app.homepage),
                       ("image", app.image)):
        if value is not None:
            doc[key] = value
    doc["requirements"] = list(app.requirements)
    if legacy_topics and not both_tags:
        doc["topics"] = list(app.tags)
    elif hints.get("tags") or app.tags:
        doc["tags"] = list(app.tags)
        if legacy_topics:
            doc["topics"] = []
    doc["environment"] = {f.key: _export_field(f) for f in app.env_fields}
    if app.artifacts:
        doc["artifacts"] = [_export_artifact(a) for a in app.artifacts]
    if app.exit_codes:
        doc["exitCodes"] = {
            str(e.code): {
                "description": _unloc(e.description, e.localized.get("description")),
                "severity": e.severity,
                "retry": e.retry,
            }
            for e in app.exit_codes
        }
    if app.source_format == "3.4":
        extra.setdefault("schemaVersion", SCHEMA_VERSION)
    for key, value in extra.items():
        doc.setdefault(key, value)
    return doc


def _export_field(f: EnvFieldDef) -> dict[str, Any]:
    extra = dict(f.extra)
    out: dict[str, Any] = {}
    if not extra.pop(HINTS, {}).get("notype") or f.type != "string":
        out["type"] = f.type
    if f.category is not None:
        out["category"] = f.category
    out["description"] = _unloc(f.description, f.localized.get("description"))
    if f.hint is not None:
        out["hint"] = _unloc(f.hint, f.localized.get("hint"))
    if f.defval is not None:
        out["defval"] = f.defval
    out["required"] = f.required
    if f.options is not None:
        out["options"] = f.options
    if f.secret and f.type != "password":
        extra["secret"] = True
    out.update(extra)
    return out


def _export_artifact(a: ArtifactDef) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": _unloc(a.name, a.localized.get("name")),
        "path": a.path,
        "type": a.type,
    }
    if a.description is not None:
        out["description"] = _unloc(a.description, a.localized.get("description"))
    return out


def export_filename(app: AppDefinition) -> str:
    """Upstream's file name: lower-cased name, non-word characters as ``_``."""
    return re.sub(r"\W", "_", app.name.lower()) + ".multiflexi.app.json"
