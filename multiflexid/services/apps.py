"""Applications in the database: import (upsert), export, lookup, removal."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, selectinload

from multiflexi.errors import Conflict, InvalidInput, NotFound
from multiflexid.domain.appdef import AppDefinition, ArtifactDef, EnvFieldDef, ExitCodeDef
from multiflexid.domain.appjson import AppJsonError, parse_app
from multiflexid.store.db import Database
from multiflexid.store.orm import (
    AppArtifact,
    AppEnvField,
    AppExitCode,
    Application,
    Job,
    RunTemplate,
)
from multiflexid.store.types import utcnow

_WITH_PARTS = (
    selectinload(Application.env_fields),
    selectinload(Application.artifacts),
    selectinload(Application.exit_codes),
)


def get_app(s: Session, ref: str | int, *, parts: bool = False) -> Application:
    """An application by id or uuid (NotFound names what was asked for)."""
    query = select(Application)
    if parts:
        query = query.options(*_WITH_PARTS)
    text = str(ref).strip()
    if text.isdigit():
        app = s.scalar(query.where(Application.id == int(text)))
    else:
        app = s.scalar(query.where(_same_uuid(text)))
    if app is None:
        raise NotFound(f"no application with id or uuid {text!r}")
    return app


def _same_uuid(uuid: str) -> ColumnElement[bool]:
    """Uuids match regardless of case (RFC 4122; an index on lower(uuid) serves this)."""
    return func.lower(Application.uuid) == uuid.lower()


def list_apps(s: Session) -> list[Application]:
    return list(s.scalars(select(Application).order_by(Application.id)))


def to_definition(app: Application) -> AppDefinition:
    """The domain view of a stored application (parts must be loaded)."""
    return AppDefinition(
        name=app.name,
        executable=app.executable,
        description=app.description,
        uuid=app.uuid,
        title=app.title,
        cmdparams=app.cmdparams,
        ociimage=app.ociimage,
        version=app.version,
        homepage=app.homepage,
        image=app.image,
        requirements=list(app.requirements),
        tags=list(app.tags),
        localized=dict(app.localized),
        extra=dict(app.extra),
        source_format=app.source_format,
        env_fields=[
            EnvFieldDef(
                key=f.key, type=f.type, category=f.category, description=f.description,
                hint=f.hint, defval=f.defval, required=f.required, secret=f.secret,
                options=f.options, localized=dict(f.localized), extra=dict(f.extra),
            )
            for f in app.env_fields
        ],
        artifacts=[
            ArtifactDef(a.name, a.path, a.type, a.description, dict(a.localized))
            for a in app.artifacts
        ],
        exit_codes=[
            ExitCodeDef(e.code, e.description, e.severity, e.retry, dict(e.localized))
            for e in app.exit_codes
        ],
    )


def _find_existing(s: Session, d: AppDefinition) -> Application | None:
    if d.uuid:
        app = s.scalar(select(Application).options(*_WITH_PARTS).where(_same_uuid(d.uuid)))
        if app is not None:
            return app
    same_name = list(
        s.scalars(select(Application).options(*_WITH_PARTS).where(Application.name == d.name))
    )
    for app in same_name:
        if app.uuid is None or d.uuid is None:
            return app
    if same_name:
        other = same_name[0]
        raise Conflict(
            f"an application named {d.name!r} already exists with uuid {other.uuid} "
            f"(id {other.id}); this file has uuid {d.uuid}"
        )
    return None


def upsert_app(s: Session, d: AppDefinition) -> tuple[Application, bool]:
    """Insert or update by uuid, then by name; parts are replaced as a whole."""
    app = _find_existing(s, d)
    created = app is None
    if app is not None:
        app.updated_at = utcnow()  # parts may change alone; the daemon's cache keys on it
    if app is None:
        app = Application(name=d.name, executable=d.executable)
        s.add(app)
        app.env_fields = []
        app.artifacts = []
        app.exit_codes = []
    app.uuid = d.uuid or app.uuid
    app.name = d.name
    app.title = d.title
    app.description = d.description
    app.executable = d.executable
    app.cmdparams = d.cmdparams
    app.ociimage = d.ociimage
    app.version = d.version
    app.homepage = d.homepage
    app.image = d.image
    app.requirements = list(d.requirements)
    app.tags = list(d.tags)
    app.localized = dict(d.localized)
    app.extra = dict(d.extra)
    app.source_format = d.source_format
    # Replace the parts: delete the old rows first so unique (app_id, key) never collides.
    app.env_fields.clear()
    app.artifacts.clear()
    app.exit_codes.clear()
    s.flush()
    app.env_fields.extend(
        AppEnvField(
            position=i, key=f.key, type=f.type, category=f.category, description=f.description,
            hint=f.hint, defval=f.defval, required=f.required, secret=f.is_secret,
            options=f.options, localized=f.localized, extra=f.extra,
        )
        for i, f in enumerate(d.env_fields)
    )
    app.artifacts.extend(
        AppArtifact(
            position=i, name=a.name, path=a.path, type=a.type, description=a.description,
            localized=a.localized,
        )
        for i, a in enumerate(d.artifacts)
    )
    app.exit_codes.extend(
        AppExitCode(
            code=e.code, description=e.description, severity=e.severity, retry=e.retry,
            localized=e.localized,
        )
        for e in d.exit_codes
    )
    s.flush()
    return app, created


def remove_app(s: Session, ref: str | int) -> Application:
    app = get_app(s, ref, parts=True)
    templates = s.scalar(select(func.count()).where(RunTemplate.app_id == app.id)) or 0
    jobs = s.scalar(select(func.count()).where(Job.app_id == app.id)) or 0
    if templates or jobs:
        raise Conflict(
            f"application {app.id} ({app.name}) has {templates} run template(s) and {jobs} "
            "job(s) in history; remove its run templates first, or disable it with "
            f"`multiflexi-cli application update --id {app.id} --disable`"
        )
    s.delete(app)
    return app


# --- importing files ---------------------------------------------------------------------


@dataclass
class ImportResult:
    """What happened to one file of an import."""

    file: str
    ok: bool
    app_id: int | None = None
    uuid: str | None = None
    name: str | None = None
    created: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files to import: directories give their ``*.json`` files, sorted."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file()))
        else:
            out.append(path)
    return out


def shared_uuids(files: list[tuple[str, str | None]]) -> dict[str, str]:
    """Files (of one import) whose uuid another file also has -> the problem, per file."""
    by_uuid: dict[str, list[str]] = {}
    for file, uuid in files:
        if uuid:
            by_uuid.setdefault(uuid.lower(), []).append(file)
    out = {}
    for file, uuid in files:
        sharing = by_uuid.get((uuid or "").lower(), [])
        if len(sharing) > 1:
            others = ", ".join(f for f in sharing if f != file)
            out[file] = f"$.uuid: {uuid} is also the uuid of {others}"
    return out


def import_files(db: Database, paths: list[Path]) -> list[ImportResult]:
    """Import each file in its own transaction: one bad file never half-writes an app.

    Files that share a uuid within one import are all refused (which one is right is
    for the admin to decide).
    """
    results: list[ImportResult] = []
    parsed: list[tuple[ImportResult, AppDefinition | None]] = []
    for path in expand_paths(paths):
        res = ImportResult(file=str(path), ok=False)
        definition = None
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            res.errors.append("file not found")
        except UnicodeDecodeError as exc:
            res.errors.append(f"not UTF-8 text (byte {exc.start})")
        except OSError as exc:
            res.errors.append(exc.strerror or str(exc))
        else:
            try:
                definition, res.warnings = parse_app(text, str(path))
            except AppJsonError as exc:
                res.errors.extend(_located(exc, str(path)))
                res.warnings = exc.warnings
        parsed.append((res, definition))
    shared = shared_uuids([(res.file, d.uuid if d else None) for res, d in parsed])
    for res, d in parsed:
        results.append(res)
        if d is None:
            continue
        res.uuid, res.name = d.uuid, d.name
        if res.file in shared:
            res.errors.append(shared[res.file] + "; not imported")
            continue
        try:
            with db.session() as s:
                app, res.created = upsert_app(s, d)
                res.app_id = app.id
            res.ok = True
        except (Conflict, InvalidInput) as exc:
            res.errors.append(exc.message)
        except DBAPIError as exc:  # rolled back; the other files still get their turn
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            res.errors.append(f"the database refused it: {reason}")
    return results


def _located(exc: AppJsonError, path: str) -> list[str]:
    """Problems of a file; invalid JSON keeps its file:line:column prefix."""
    if exc.source != path:  # "path:line:col" for invalid JSON
        return [f"{exc.source}: {p}" for p in exc.problems]
    return list(exc.problems)


def import_text(s: Session, text: str, source: str) -> tuple[Application, bool, list[str]]:
    """One application definition given as text (the socket's ``app.import``: the TUI reads
    the file, the daemon may not): validated by the same parser as `import-json`; each
    problem as ``"<json path>: <message>"`` (InvalidInput, all of them in ``data.errors``)."""
    try:
        definition, warnings = parse_app(text, source)
    except AppJsonError as exc:
        problems = _located(exc, source)
        raise InvalidInput("; ".join(problems), {
            "errors": problems, "field": problems[0].split(": ", 1)[0] if problems else None,
        }) from None
    app, created = upsert_app(s, definition)
    return app, created, warnings
