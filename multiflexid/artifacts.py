"""Artifacts: the files a job leaves in its directory, and its result report.

An application declares artifacts with a ``path`` that is a regular expression on file
names relative to the job directory, as in the original (placeholders such as
``${RESULT_FILE}`` or ``{PROJECT}`` are filled with the job's values first, escaped). A
``directory`` artifact takes every file below that directory. The ``RESULT_FILE`` is
always collected; when it is a valid result report its status, message and metrics go
on the job. What is over the size limits is recorded as skipped, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from multiflexi import schemas
from multiflexid.domain.appdef import ArtifactDef
from multiflexid.domain.appjson import schema_problems

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}|\{([A-Za-z0-9_]+)\}")
_TYPES = {"html": "text/html", "json": "application/json", "pdf": "application/pdf",
          "xml": "application/xml", "csv": "text/csv", "text": "text/plain",
          "txt": "text/plain"}


@dataclass
class CollectedFile:
    filename: str  # relative to the job directory
    name: str | None  # the artifact definition it matched (None: RESULT_FILE only)
    content_type: str
    size: int
    sha256: str
    content: bytes | None  # None when skipped
    skipped: bool = False
    note: str | None = None


@dataclass
class Report:
    status: str
    message: str | None
    metrics: dict[str, Any]
    producer: str


@dataclass
class Collection:
    files: list[CollectedFile] = field(default_factory=list)
    report: Report | None = None
    warnings: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)  # files not declared as artifacts


def pattern_for(path: str, env: Mapping[str, str], workdir: Path) -> str:
    """The artifact's regex with placeholders replaced by the job's (escaped) values."""
    def sub(m: re.Match[str]) -> str:
        key = m.group(1) or m.group(2)
        if key not in env:
            return m.group(0)
        value = env[key]
        if os.path.isabs(value):
            try:
                value = str(Path(value).relative_to(workdir))
            except ValueError:
                value = os.path.basename(value)
        return re.escape(value)

    return _PLACEHOLDER.sub(sub, path)


def _files(workdir: Path) -> list[str]:
    out = []
    for root, _dirs, names in os.walk(workdir):
        for name in names:
            full = Path(root) / name
            if full.is_file() and not full.is_symlink():
                out.append(str(full.relative_to(workdir)))
    return sorted(out)


def _content_type(filename: str, declared: str | None) -> str:
    if declared and declared.lower() in _TYPES:
        return _TYPES[declared.lower()]
    guess, _ = mimetypes.guess_type(filename)
    return guess or "application/octet-stream"


def _matches(definition: ArtifactDef, rel: str, env: Mapping[str, str],
             workdir: Path) -> bool:
    pattern = pattern_for(definition.path, env, workdir)
    if definition.type == "directory":
        prefix = pattern.strip("/").replace("\\.", ".")
        return prefix in (".", "") or rel == prefix or rel.startswith(prefix.rstrip("/") + "/")
    try:
        return re.fullmatch(pattern, rel) is not None or re.fullmatch(
            pattern, os.path.basename(rel)) is not None
    except re.error:
        return False


def collect(
    workdir: Path,
    definitions: list[ArtifactDef],
    env: Mapping[str, str],
    *,
    max_file: int,
    max_job: int,
) -> Collection:
    result = Collection()
    if not workdir.is_dir():
        return result
    result_file = env.get("RESULT_FILE") or ""
    result_rel = None
    if result_file:
        try:
            result_rel = str(Path(result_file).resolve().relative_to(workdir.resolve())) \
                if os.path.isabs(result_file) else result_file
        except ValueError:
            result.warnings.append(
                f"RESULT_FILE {result_file} is outside the job directory; not collected")
    total = 0
    for rel in _files(workdir):
        matched = next((d for d in definitions if _matches(d, rel, env, workdir)), None)
        if matched is None and rel != result_rel:
            result.left_behind.append(rel)
            continue
        path = workdir / rel
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        item = CollectedFile(
            filename=rel, name=matched.name if matched else None,
            content_type=_content_type(rel, matched.type if matched else None),
            size=size, sha256=digest.hexdigest(), content=None,
        )
        if size > max_file:
            item.skipped = True
            item.note = f"not stored: {size} bytes is over the per-file limit of {max_file}"
        elif total + size > max_job:
            item.skipped = True
            item.note = (f"not stored: the job's artifacts would exceed the per-job limit of "
                         f"{max_job} bytes")
        else:
            item.content = path.read_bytes()
            total += size
        result.files.append(item)
        if rel == result_rel:
            _read_report(item, path, result)
    if result_rel and not (workdir / result_rel).exists():
        result.warnings.append(f"RESULT_FILE {result_rel} was not written by the job")
    return result


_report_validator: Draft7Validator | None = None


def _read_report(item: CollectedFile, path: Path, result: Collection) -> None:
    global _report_validator
    if _report_validator is None:
        _report_validator = Draft7Validator(schemas.load(schemas.REPORT))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        item.note = f"kept as a plain artifact: not a JSON report ({exc})"
        result.warnings.append(f"RESULT_FILE {item.filename} is not a valid report: {exc}")
        return
    problems = schema_problems(_report_validator, data)
    if not problems and isinstance(data, dict):
        try:
            datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"$.timestamp: {data['timestamp']!r} is not an ISO 8601 date-time")
    if problems:
        item.note = "kept as a plain artifact: not a valid report (" + "; ".join(problems) + ")"
        result.warnings.append(
            f"RESULT_FILE {item.filename} is not a valid report: " + "; ".join(problems))
        return
    result.report = Report(
        status=data["status"], message=data.get("message"),
        metrics=dict(data.get("metrics") or {}), producer=str(data["producer"]),
    )
