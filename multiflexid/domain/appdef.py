"""What an application is, independent of any file format or database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ENV_TYPES = (
    "string", "file-path", "email", "url", "integer", "float", "bool", "password", "set", "text",
)
# Legacy type names found in older upstream files, and what the original rewrites them to.
LEGACY_ENV_TYPES = {
    "directory": "file-path",
    "file": "file-path",
    "checkbox": "bool",
    "boolean": "bool",
    "switch": "bool",
    "number": "integer",
    "select": "set",
}
ENV_CATEGORIES = ("API", "Database", "Behavior", "Security", "Other")
SEVERITIES = ("success", "info", "warning", "error", "critical")

Localized = dict[str, str]


@dataclass
class EnvFieldDef:
    key: str
    type: str = "string"
    category: str | None = None
    description: str = ""
    hint: str | None = None
    defval: Any = None
    required: bool = False
    secret: bool = False
    options: Any = None
    # {"description": {lang: text}, "hint": {lang: text}} when upstream gave several languages
    localized: dict[str, Localized] = field(default_factory=dict)
    # Other keys of the upstream field, kept verbatim for export
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_secret(self) -> bool:
        return self.secret or self.type == "password"


@dataclass
class ArtifactDef:
    name: str
    path: str  # a regular expression on file names (may hold {VAR} placeholders)
    type: str = "file"
    description: str | None = None
    localized: dict[str, Localized] = field(default_factory=dict)


@dataclass
class ExitCodeDef:
    code: int
    description: str = ""
    severity: str = "error"
    retry: bool = False
    localized: dict[str, Localized] = field(default_factory=dict)


@dataclass
class AppDefinition:
    name: str
    executable: str
    description: str = ""
    uuid: str | None = None
    title: str | None = None
    cmdparams: str = ""
    ociimage: str | None = None
    version: str | None = None
    homepage: str | None = None
    image: str | None = None
    requirements: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    localized: dict[str, Localized] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    source_format: str = "3.4"
    env_fields: list[EnvFieldDef] = field(default_factory=list)
    artifacts: list[ArtifactDef] = field(default_factory=list)
    exit_codes: list[ExitCodeDef] = field(default_factory=list)

    def env_field(self, key: str) -> EnvFieldDef | None:
        for f in self.env_fields:
            if f.key == key:
                return f
        return None

    def exit_code(self, code: int | None) -> ExitCodeDef | None:
        for ec in self.exit_codes:
            if ec.code == code:
                return ec
        return None


@dataclass
class CredentialFieldDef:
    keyword: str
    name: str
    type: str = "string"
    description: str = ""
    required: bool = False
    default: Any = None
    options: Any = None
    localized: dict[str, Localized] = field(default_factory=dict)

    @property
    def is_secret(self) -> bool:
        return self.type in ("password", "secret")


@dataclass
class CredentialTypeDef:
    code: str
    name: str
    description: str = ""
    uuid: str | None = None
    version: str | None = None
    localized: dict[str, Localized] = field(default_factory=dict)
    fields: list[CredentialFieldDef] = field(default_factory=list)

    def field(self, keyword: str) -> CredentialFieldDef | None:
        for f in self.fields:
            if f.keyword == keyword:
                return f
        return None
