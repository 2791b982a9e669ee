"""The audit trail: every change made through the socket or the CLI, recorded in the
transaction that makes it.

Whoever changes something puts an :class:`Actor` on the session (``set_actor``: the CLI for
its own sessions, the daemon's operations for the writes they submit). While one is set,
every flush records the changes of the audited entities — companies, credentials and
their values, run templates with their configuration and credentials, applications,
actions, access grants — as a field diff, from the ORM's own attribute history (so no
service function can forget it); secret values appear only as "changed". What is not a
row change (run now, cancel, prune) is recorded explicitly with :func:`note`. Changes the
daemon makes by itself (ticks, job ends) have no actor and are not audit entries.

Each entry also goes to the journal (``MULTIFLEXI_AUDIT=1``) once its transaction has
committed. The table is append-only: nothing here updates or deletes it, and on
PostgreSQL a trigger refuses it to anyone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, event, insert, inspect, select
from sqlalchemy.orm import Session

from .orm import (
    AccessGrant,
    Action,
    AppArtifact,
    AppEnvField,
    AppExitCode,
    Application,
    AuditEntry,
    Company,
    CompanyEnv,
    Credential,
    CredentialValue,
    RunTemplate,
    RunTemplateConfig,
    RunTemplateCredential,
    RunTemplateTag,
)

log = logging.getLogger("multiflexid.audit")

AUDIT = cast(Table, AuditEntry.__table__)
CHANGED = "changed"
# Kept up to date by the system, not changed by anyone: not part of a diff.
_DERIVED = {"id", "created_at", "updated_at", "next_schedule", "last_schedule",
            "successful_jobs_count", "failed_jobs_count"}


@dataclass(frozen=True)
class Actor:
    user: str  # the Unix user
    via: str  # "socket" or "cli"
    login_user: str | None = None  # who logged in, when it is not ``user`` (sudo)


def set_actor(s: Session, actor: Actor | None) -> None:
    if actor is None:
        s.info.pop("actor", None)
    else:
        s.info["actor"] = actor


def note(s: Session, entity: str, entity_id: int | None, company_id: int | None,
         action: str, summary: str, diff: dict[str, Any] | None = None,
         fields: dict[str, Any] | None = None, runtemplate_id: int | None = None, *,
         merge: bool = False) -> None:
    """Record a change that is not a row's (run now, cancel, prune...) — if someone made it.
    ``fields``: more journal fields for its journal entry (a job's context);
    ``runtemplate_id``: the template it concerns (a job's; a template's own by default),
    for that template's trail. ``merge``: say what the row changes of this entity flushed
    so far were (a clone, a bulk change): the note gives that one entry its action and
    summary and adds its diff (standing alone when there was no row change)."""
    actor: Actor | None = s.info.get("actor")
    if actor is None:
        return
    if runtemplate_id is None and entity == "runtemplate":
        runtemplate_id = entity_id
    s.info.setdefault("audit_pending", []).append(
        (actor, {"entity": entity, "entity_id": entity_id, "company_id": company_id,
                 "runtemplate_id": runtemplate_id, "action": action, "summary": summary,
                 "diff": diff or {}, "fields": fields or {},
                 **({"_merge": True} if merge else {})}))


def _merge(pending: list[tuple[Actor, dict[str, Any]]]) -> list[tuple[Actor, dict[str, Any]]]:
    """One entry per actor and thing changed in a transaction (a template created and then
    configured in two flushes is one change); explicit notes stay as they are."""
    merged: dict[tuple[Actor, str, Any], dict[str, Any]] = {}
    out: list[tuple[Actor, dict[str, Any]]] = []
    for actor, e in pending:
        if e.pop("_merge", False) and (actor, e["entity"], e["entity_id"]) in merged:
            first = merged[(actor, e["entity"], e["entity_id"])]
            first["action"], first["_summary"] = e["action"], e["summary"]
            first["diff"].update(e["diff"])
            continue
        if not e.get("_row"):
            out.append((actor, e))
            continue
        key = (actor, e["entity"], e["entity_id"])
        if key not in merged:
            merged[key] = e
            out.append((actor, e))
            continue
        first = merged[key]
        if first["action"] == "created" and e["action"] == "removed":
            first["action"] = "created and removed"
        elif e["action"] != "changed":
            first["action"] = e["action"]
        for name, change in e["diff"].items():
            earlier = first["diff"].get(name)
            first["diff"][name] = (earlier.then(change) if isinstance(earlier, _Child)
                                   and isinstance(change, _Child) else change)
        first["company_id"] = first["company_id"] or e["company_id"]
        first["runtemplate_id"] = first["runtemplate_id"] or e["runtemplate_id"]
    shown = []
    for actor, e in out:
        if e.pop("_row", False):
            diff = {}
            for name, change in e["diff"].items():
                change = change.shown() if isinstance(change, _Child) else change
                if change is not None:
                    diff[name] = change
            if e["action"] == "changed" and not diff:
                continue  # replaced by the same (an app imported again, unchanged)
            e["diff"] = diff
            names = ", ".join(sorted(diff))[:200]
            e["summary"] = e.pop("_summary", None) or (
                f"{e['entity']} {e['entity_id']} {e['action']}"
                + (f": {names}" if names and e["action"] == "changed" else ""))
        shown.append((actor, e))
    return shown


def _record(s: Session, entries: list[tuple[Actor, dict[str, Any]]]) -> None:
    now = datetime.now(UTC)
    rows = [{**e, "at": now, "user": actor.user, "login_user": actor.login_user,
             "via": actor.via} for actor, e in entries]
    s.connection().execute(insert(AUDIT), [{k: v for k, v in row.items() if k != "fields"}
                                           for row in rows])
    s.info.setdefault("audit_committed", []).extend(rows)


# --- changes of rows, from the ORM's history --------------------------------------------------

# entity name, how to find the company id, fields that are secret when the row says so
_ENTITIES: dict[type, str] = {
    Company: "company", Credential: "credential", RunTemplate: "runtemplate",
    Application: "application", Action: "action", AccessGrant: "access",
}
# Child rows whose changes are changes of their parent: (parent class, parent id attribute,
# the key naming the child in the diff)
_CHILDREN: dict[type, tuple[type, str, str]] = {
    CredentialValue: (Credential, "credential_id", "values"),
    RunTemplateConfig: (RunTemplate, "runtemplate_id", "config"),
    RunTemplateCredential: (RunTemplate, "runtemplate_id", "credentials"),
    RunTemplateTag: (RunTemplate, "runtemplate_id", "tags"),
    CompanyEnv: (Company, "company_id", "environment"),
    AppEnvField: (Application, "app_id", "environment"),
    AppArtifact: (Application, "app_id", "artifacts"),
    AppExitCode: (Application, "app_id", "exit_codes"),
}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (str, int, float, bool, type(None), list, dict)):
        return value
    return str(value)


def _fields(obj: Any, kind: str) -> dict[str, tuple[Any, Any]]:
    """(before, after) of each changed column of ``obj`` (``kind``: new, dirty, deleted)."""
    state = inspect(obj)
    out: dict[str, tuple[Any, Any]] = {}
    for attr in state.mapper.column_attrs:
        key = attr.key
        if key in _DERIVED:
            continue
        hist = state.attrs[key].history
        if kind == "new":
            value = getattr(obj, key)
            if value not in (None, "", [], {}):
                out[key] = (None, value)
        elif kind == "deleted":
            before = hist.unchanged[0] if hist.unchanged else (
                hist.deleted[0] if hist.deleted else None)
            out[key] = (before, None)
        elif hist.has_changes():
            before = hist.deleted[0] if hist.deleted else None
            after = hist.added[0] if hist.added else None
            if before != after:
                out[key] = (before, after)
    return out


def _child_key(obj: Any) -> str:
    if isinstance(obj, CredentialValue | RunTemplateConfig | AppEnvField | CompanyEnv):
        return str(obj.key)
    if isinstance(obj, RunTemplateTag):
        return str(obj.tag)
    if isinstance(obj, RunTemplateCredential):
        return str(obj.credential_id)
    if isinstance(obj, AppExitCode):
        return str(obj.code)
    return str(getattr(obj, "name", "") or getattr(obj, "id", ""))


@dataclass
class _Child:
    """A child row of an audited thing across a transaction: its values before (None: it
    did not exist) and after (None: it was removed)."""

    before: dict[str, Any] | None
    after: dict[str, Any] | None
    secret: bool
    has_value: bool

    def then(self, later: _Child) -> _Child:
        return _Child(self.before, later.after, self.secret or later.secret, self.has_value)

    def shown(self) -> Any:
        """[before, after] of its value; "set"/"changed"/"removed" for a secret one,
        "added"/"changed"/"removed" for one without a value; None if nothing changed."""
        if self.before == self.after:
            return None
        if self.before is None or self.after is None:
            word = "set" if self.before is None and self.secret else (
                "added" if self.before is None else "removed")
        else:
            word = CHANGED
        if self.secret or not self.has_value:
            return word
        return [_plain((self.before or {}).get("value")), _plain((self.after or {}).get("value"))]


_SKIP = {"id", "position", "credential_id", "runtemplate_id", "app_id", "company_id"}


def _child(obj: Any, kind: str) -> _Child:
    state = inspect(obj)
    now = {a.key: getattr(obj, a.key) for a in state.mapper.column_attrs
           if a.key not in _SKIP}
    if isinstance(obj, RunTemplateCredential):  # the assignment itself is the thing
        now = {"credential_id": obj.credential_id}
    before: dict[str, Any] | None = dict(now)
    after: dict[str, Any] | None = dict(now)
    if kind == "new":
        before = None
    elif kind == "deleted":
        after = None
    else:
        for key, (old, _new) in _fields(obj, kind).items():
            if before is not None and key in before:
                before[key] = old
    secret = bool(getattr(obj, "encrypted", False)) or bool(before and before.get("encrypted"))
    return _Child(before, after, secret, hasattr(obj, "value"))


def _secret_values(value: Any) -> Any:
    """A JSON value with encrypted parts ({"encrypted": token}) shown as "(secret)"."""
    if isinstance(value, dict):
        if set(value) == {"encrypted"}:
            return "(secret)"
        return {k: _secret_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secret_values(v) for v in value]
    return value


def _runtemplate_of(cls: type, obj: Any) -> int | None:
    """The run template a change concerns: the template itself, or an action's."""
    if cls is RunTemplate:
        return int(obj.id)
    if cls is Action:
        return cast(int | None, obj.runtemplate_id)
    return None


def _company_of(s: Session, cls: type, obj: Any) -> int | None:
    if cls is Company:
        return int(obj.id)
    if cls is Application:
        return None
    company_id = getattr(obj, "company_id", None)
    if company_id is None and cls is Action and getattr(obj, "runtemplate_id", None):
        company_id = s.connection().execute(select(RunTemplate.company_id).where(
            RunTemplate.id == obj.runtemplate_id)).scalar()
    return company_id


def _collect(s: Session, flush: Any = None) -> list[dict[str, Any]]:
    """The changes of a flush (``flush``: its unit of work, which knows the orphans a
    removal from a parent's list deleted)."""
    changes: dict[tuple[str, int], dict[str, Any]] = {}

    def entry(cls: type, obj_id: int, action: str) -> dict[str, Any]:
        key = (_ENTITIES[cls], obj_id)
        if key not in changes:
            changes[key] = {"entity": key[0], "entity_id": obj_id, "action": action,
                            "diff": {}, "cls": cls}
        elif action != "changed":
            changes[key]["action"] = action
        return changes[key]

    for kind, objs in (("new", s.new), ("dirty", s.dirty), ("deleted", s.deleted)):
        for obj in objs:
            cls = type(obj)
            action = {"new": "created", "dirty": "changed", "deleted": "removed"}[kind]
            if cls in _ENTITIES:
                fields = _fields(obj, kind)
                if kind == "dirty" and not fields:
                    continue  # only derived fields changed (a tick, a count)
                e = entry(cls, int(obj.id), action)
                e["obj"] = obj
                for name, (before, after) in fields.items():
                    pair = [_secret_values(_plain(before)), _secret_values(_plain(after))]
                    # only a secret part differs: say no more than that
                    e["diff"][name] = CHANGED if pair[0] == pair[1] else pair
            elif cls in _CHILDREN:
                if kind == "dirty" and flush is not None and flush.is_deleted(inspect(obj)):
                    kind_of_child = "deleted"  # taken out of its parent's list: an orphan
                else:
                    kind_of_child = kind
                parent_cls, parent_attr, label = _CHILDREN[cls]
                parent_id = getattr(obj, parent_attr)
                if parent_id is None:
                    continue
                e = entry(parent_cls, int(parent_id), "changed")
                name = f"{label}.{_child_key(obj)}"
                change = _child(obj, kind_of_child)
                e["diff"][name] = e["diff"][name].then(change) if isinstance(
                    e["diff"].get(name), _Child) else change
    entries = []
    for e in changes.values():
        cls, obj = e.pop("cls"), e.pop("obj", None)
        if obj is None:  # only children changed: the parent's company
            obj = s.identity_map.get((cls, (e["entity_id"],), None)) or s.get(cls, e["entity_id"])
        e["company_id"] = _company_of(s, cls, obj) if obj is not None else None
        e["runtemplate_id"] = (_runtemplate_of(cls, obj) if obj is not None
                               else e["entity_id"] if cls is RunTemplate else None)
        e["summary"] = ""
        e["_row"] = True
        entries.append(e)
    return entries


@event.listens_for(Session, "after_flush")
def _after_flush(s: Session, ctx: Any) -> None:
    actor: Actor | None = s.info.get("actor")
    if actor is None:
        return
    s.info.setdefault("audit_pending", []).extend((actor, e) for e in _collect(s, ctx))


@event.listens_for(Session, "before_commit")
def _before_commit(s: Session) -> None:
    if s.info.get("actor") is not None:
        s.flush()  # the last changes, still under their actor
    pending = s.info.pop("audit_pending", [])
    entries = _merge(pending) if pending else []
    if entries:
        _record(s, entries)


@event.listens_for(Session, "after_commit")
def _after_commit(s: Session) -> None:
    for row in s.info.pop("audit_committed", []):
        log.info("audit: %s by %s (%s)%s", row["summary"], row["user"], row["via"],
                 f" logged in as {row['login_user']}" if row["login_user"] else "",
                 extra={"MULTIFLEXI_AUDIT": 1, "MULTIFLEXI_AUDIT_USER": row["user"],
                        "MULTIFLEXI_AUDIT_ENTITY": row["entity"],
                        "MULTIFLEXI_AUDIT_ENTITY_ID": row["entity_id"],
                        "MULTIFLEXI_COMPANY_ID": row["company_id"],
                        **({"MULTIFLEXI_JOB_ID": row["entity_id"]}
                           if row["entity"] == "job" else {}), **row.get("fields", {})})


@event.listens_for(Session, "after_rollback")
def _after_rollback(s: Session) -> None:
    s.info.pop("audit_committed", None)
    s.info.pop("audit_pending", None)
