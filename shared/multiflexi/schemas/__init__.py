"""Upstream MultiFlexi JSON schemas, verbatim (see SOURCES.md in this folder)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

APPLICATION = "application.json"  # app definition, schema 3.4
APPLICATION_LEGACY = "multiflexi.app.schema.json"  # app definition, legacy 2.1
REPORT = "report.json"  # result file written by applications
CREDENTIAL_TYPE = "credential-type.json"
CREDENTIAL_PROTOTYPE = "credential-prototype.json"


@cache
def load(name: str) -> dict[str, Any]:
    """The parsed schema file ``name`` (one of the constants above)."""
    text = resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
