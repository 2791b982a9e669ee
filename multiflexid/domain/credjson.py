"""Credential-type JSON (upstream ``credential-type.json`` 1.1, or a credential prototype)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft7Validator, FormatChecker

from multiflexi import schemas

from .appdef import ENV_TYPES, CredentialFieldDef, CredentialTypeDef, Localized
from .appjson import AppJsonError, load_json, localized, schema_problems
from .config import ConfigError, normalize

# Prototype field types that are only presentation; the others (email, url, integer...) are
# kept as they are, so that values are checked against them.
_PROTOTYPE_TYPES = {"textarea": "string", "file": "string"}
# Credential-type field types checked like these environment field types; those with the
# name of an environment field type are checked as one.
_AS_ENV_TYPE = {"number": "float", "boolean": "bool", "select": "set", "secret": "password"}


def env_type(field_type: str) -> str:
    """The environment field type whose check a credential field's values get."""
    return _AS_ENV_TYPE.get(field_type, field_type if field_type in ENV_TYPES else "string")


def _validator(name: str) -> Draft7Validator:
    return Draft7Validator(schemas.load(name), format_checker=FormatChecker())


def parse_credential_type(text: str, source: str = "<input>") -> CredentialTypeDef:
    data = load_json(text, source)
    if not isinstance(data, dict):
        raise AppJsonError(source, ["$: a credential type must be a JSON object"])
    schema_id = str(data.get("$schema") or "") + str(data.get("$id") or "")
    fields = data.get("fields") or []
    prototype = "prototype" in schema_id or any(
        isinstance(f, dict) and "default_value" in f for f in fields if isinstance(fields, list)
    )
    name = schemas.CREDENTIAL_PROTOTYPE if prototype else schemas.CREDENTIAL_TYPE
    doc = {k: v for k, v in data.items() if k not in ("$schema", "$id")}
    problems = schema_problems(_validator(name), doc)
    seen: set[str] = set()
    for i, f in enumerate(fields if isinstance(fields, list) else []):
        kw = f.get("keyword") if isinstance(f, dict) else None
        if isinstance(kw, str):
            if kw in seen:
                problems.append(f"$.fields[{i}].keyword: {kw!r} appears twice")
            seen.add(kw)
        problems.extend(_default_problems(f, f"$.fields[{i}]") if isinstance(f, dict) else [])
    if problems:
        raise AppJsonError(source, problems)
    loc: dict[str, Localized] = {}
    main_name, langs = localized(data["name"])
    if langs:
        loc["name"] = langs
    description, langs = localized(data.get("description"))
    if langs:
        loc["description"] = langs
    return CredentialTypeDef(
        code=str(data["code"]),
        name=main_name,
        description=description,
        uuid=data.get("uuid"),
        version=data.get("version"),
        localized=loc,
        fields=[_field(f) for f in fields],
    )


def _default_problems(f: dict[str, Any], path: str) -> list[str]:
    """A default that does not fit its field's type would refuse every credential."""
    key = "default_value" if "default_value" in f else "default"
    value, ftype = f.get(key), f.get("type")
    if not isinstance(value, str) or not isinstance(ftype, str) or ftype == "select":
        return []  # (the options of a select are checked against the stored list)
    try:
        normalize(env_type(_PROTOTYPE_TYPES.get(ftype, ftype)), value, f"{path}.{key}")
    except ConfigError as exc:
        return [str(exc)]
    return []


def _field(f: dict[str, Any]) -> CredentialFieldDef:
    loc: dict[str, Localized] = {}
    name, langs = localized(f.get("name") or f["keyword"])
    if langs:
        loc["name"] = langs
    description, langs = localized(f.get("description"))
    if langs:
        loc["description"] = langs
    ftype = _PROTOTYPE_TYPES.get(f["type"], f["type"])
    options = f.get("options")
    if isinstance(options, list) and options and isinstance(options[0], dict):
        options = [o.get("value") for o in options]
    return CredentialFieldDef(
        keyword=f["keyword"],
        name=name,
        type=ftype,
        description=description,
        required=bool(f.get("required", False)),
        default=f.get("default", f.get("default_value")),
        options=options,
        localized=loc,
    )
