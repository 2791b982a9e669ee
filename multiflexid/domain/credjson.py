"""Credential-type JSON (upstream ``credential-type.json`` 1.1, or a credential prototype)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft7Validator, FormatChecker

from multiflexi import schemas

from .appdef import CredentialFieldDef, CredentialTypeDef, Localized
from .appjson import AppJsonError, load_json, localized, schema_problems

# Prototype field types mapped onto credential-type field types.
_PROTOTYPE_TYPES = {
    "email": "string", "url": "string", "integer": "number", "textarea": "string",
    "file": "string",
}


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
