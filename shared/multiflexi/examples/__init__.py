"""Real upstream application definitions and example credential types (demo data)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def app_files() -> list[Path]:
    """The bundled upstream ``*.app.json`` files, sorted by name."""
    root = Path(str(resources.files(__name__)))
    return sorted(root.glob("*.app.json"))


def credential_type_files() -> list[Path]:
    root = Path(str(resources.files(__name__))) / "credential-types"
    return sorted(root.glob("*.json"))
