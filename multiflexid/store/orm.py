"""SQLAlchemy 2 models of everything MultiFlexi stores.

All timestamps are timezone-aware UTC (:class:`UTCDateTime`). Relationships are
``lazy="raise"`` so no query hides in attribute access: load what you need explicitly.
Every change here needs an Alembic migration in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, TypeVar, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from multiflexi import states

from .types import UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a bigint.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# --- applications ------------------------------------------------------------------------


class Application(Timestamped, Base):
    __tablename__ = "application"

    id: Mapped[int] = mapped_column(primary_key=True)
    uuid: Mapped[str | None] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    title: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    executable: Mapped[str] = mapped_column(String(1024))
    cmdparams: Mapped[str] = mapped_column(Text, default="")
    ociimage: Mapped[str | None] = mapped_column(String(512))
    version: Mapped[str | None] = mapped_column(String(64))
    homepage: Mapped[str | None] = mapped_column(String(1024))
    image: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    requirements: Mapped[list[Any]] = mapped_column(default=list)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    # Every language of name/title/description: {"name": {"en": ..., "cs": ...}, ...}
    localized: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Upstream keys we keep for a faithful export (events, produces, kubernetes, setup...)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # "3.4" or "2.1": the format the definition came in
    source_format: Mapped[str] = mapped_column(String(8), default="3.4")

    env_fields: Mapped[list[AppEnvField]] = relationship(
        back_populates="app", cascade="all, delete-orphan", lazy="raise",
        order_by="AppEnvField.position",
    )
    artifacts: Mapped[list[AppArtifact]] = relationship(
        back_populates="app", cascade="all, delete-orphan", lazy="raise",
        order_by="AppArtifact.position",
    )
    exit_codes: Mapped[list[AppExitCode]] = relationship(
        back_populates="app", cascade="all, delete-orphan", lazy="raise",
        order_by="AppExitCode.code",
    )


# Uuids match regardless of case (as RFC 4122 says, and as upstream's MySQL compares them);
# the plain unique constraint of the first schema stays beside it.
Index("uq_application_uuid_lower", func.lower(Application.uuid), unique=True)


class AppEnvField(Base):
    """One configuration key an application reads from its environment."""

    __tablename__ = "app_env_field"
    __table_args__ = (UniqueConstraint("app_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(default=0)
    key: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32), default="string")
    category: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    hint: Mapped[str | None] = mapped_column(Text)
    # The default as upstream wrote it (string, number, bool...), JSON-encoded
    defval: Mapped[Any] = mapped_column(JSON, nullable=True)
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[Any] = mapped_column(JSON, nullable=True)
    # {"description": {lang: ...}, "hint": {...}}
    localized: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Other keys of the upstream definition (kept for export), incl. a legacy type name
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)

    app: Mapped[Application] = relationship(back_populates="env_fields", lazy="raise")


class AppArtifact(Base):
    """A file the application leaves behind; ``path`` is a regular expression."""

    __tablename__ = "app_artifact"

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(
        ForeignKey("application.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(64), default="file")
    description: Mapped[str | None] = mapped_column(Text)
    localized: Mapped[dict[str, Any]] = mapped_column(default=dict)

    app: Mapped[Application] = relationship(back_populates="artifacts", lazy="raise")


class AppExitCode(Base):
    """What an exit code of the application means and whether to retry on it."""

    __tablename__ = "app_exit_code"
    __table_args__ = (UniqueConstraint("app_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"))
    # upstream allows any non-negative integer (HTTP-like codes...); 64 bits are kept
    code: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16), default="error")
    retry: Mapped[bool] = mapped_column(Boolean, default=False)
    localized: Mapped[dict[str, Any]] = mapped_column(default=dict)

    app: Mapped[Application] = relationship(back_populates="exit_codes", lazy="raise")


# --- companies and credentials --------------------------------------------------------------


class Company(Timestamped, Base):
    __tablename__ = "company"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    ic: Mapped[str | None] = mapped_column(String(32))
    dic: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Zabbix: the host its jobs' ends are reported under (as the original's zabbix_host),
    # and the server or proxy they go to when not the global zabbix_server
    zabbix_host: Mapped[str | None] = mapped_column(String(255))
    zabbix_server: Mapped[str | None] = mapped_column(String(255))


# Slugs match regardless of case: --company ACME is acme, and there is never an ACME beside it.
Index("uq_company_slug_lower", func.lower(Company.slug), unique=True)


class CompanyEnv(Base):
    """A variable every job of the company gets (after the application's defaults, before
    credentials); ``encrypted`` ones hold a Fernet token, never clear text."""

    __tablename__ = "company_env"
    __table_args__ = (UniqueConstraint("company_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text, default="")
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)


class CredentialType(Timestamped, Base):
    __tablename__ = "credential_type"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    uuid: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[str | None] = mapped_column(String(32))
    localized: Mapped[dict[str, Any]] = mapped_column(default=dict)

    fields: Mapped[list[CredentialTypeField]] = relationship(
        back_populates="credential_type", cascade="all, delete-orphan", lazy="raise",
        order_by="CredentialTypeField.position",
    )


class CredentialTypeField(Base):
    __tablename__ = "credential_type_field"
    __table_args__ = (UniqueConstraint("credential_type_id", "keyword"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    credential_type_id: Mapped[int] = mapped_column(
        ForeignKey("credential_type.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(default=0)
    keyword: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32), default="string")
    description: Mapped[str] = mapped_column(Text, default="")
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    default: Mapped[Any] = mapped_column(JSON, nullable=True)
    options: Mapped[Any] = mapped_column(JSON, nullable=True)
    localized: Mapped[dict[str, Any]] = mapped_column(default=dict)

    credential_type: Mapped[CredentialType] = relationship(back_populates="fields", lazy="raise")


class Credential(Timestamped, Base):
    __tablename__ = "credential"
    __table_args__ = (UniqueConstraint("company_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="RESTRICT"))
    credential_type_id: Mapped[int] = mapped_column(
        ForeignKey("credential_type.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))

    values: Mapped[list[CredentialValue]] = relationship(
        back_populates="credential", cascade="all, delete-orphan", lazy="raise",
        order_by="CredentialValue.key",
    )


class CredentialValue(Base):
    """One value of a credential; ``encrypted`` ones hold a Fernet token, never clear text."""

    __tablename__ = "credential_value"
    __table_args__ = (UniqueConstraint("credential_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    credential_id: Mapped[int] = mapped_column(ForeignKey("credential.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text, default="")
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)

    credential: Mapped[Credential] = relationship(back_populates="values", lazy="raise")


# --- run templates ---------------------------------------------------------------------------


class RunTemplate(Timestamped, Base):
    __tablename__ = "runtemplate"
    __table_args__ = (
        # The scheduler's tick asks "which active templates are due?": keep it an index scan.
        Index("ix_runtemplate_due", "active", "next_schedule"),
        # The deadline tracker asks "which templates have a tick to start tracking?".
        Index("ix_runtemplate_deadline_next_tick", "deadline_next_tick"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    app_id: Mapped[int] = mapped_column(
        ForeignKey("application.id", ondelete="RESTRICT"), index=True
    )
    company_id: Mapped[int] = mapped_column(
        ForeignKey("company.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    interv: Mapped[str] = mapped_column(String(1), default="n")
    cron: Mapped[str | None] = mapped_column(String(255))
    timezone: Mapped[str | None] = mapped_column(String(64))
    delay: Mapped[int] = mapped_column(Integer, default=0)
    executor: Mapped[str] = mapped_column(String(32), default="Native")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    timeout: Mapped[int | None] = mapped_column(Integer)
    # Retries: max_attempts counts the first run; backoff none|fixed|linear|exponential
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    retry_backoff: Mapped[str] = mapped_column(String(16), default="none")
    retry_min_gap: Mapped[int] = mapped_column(Integer, default=60)
    # Podman: image override, limits, network mode
    ociimage: Mapped[str | None] = mapped_column(String(512))
    memory_limit: Mapped[str | None] = mapped_column(String(32))
    cpu_limit: Mapped[float | None] = mapped_column()
    pids_limit: Mapped[int | None] = mapped_column(Integer)
    network: Mapped[str | None] = mapped_column(String(64))
    # The original's columns, kept for its data; actions live in the ``action`` table.
    success_actions: Mapped[list[Any]] = mapped_column(default=list)
    fail_actions: Mapped[list[Any]] = mapped_column(default=list)
    # Whether the company's default actions apply to this template too.
    inherit_actions: Mapped[bool] = mapped_column(Boolean, default=True,
                                                  server_default=text("true"))
    # Why it was switched off by something other than an admin (a Stop action).
    inactive_reason: Mapped[str | None] = mapped_column(Text)
    next_schedule: Mapped[datetime | None] = mapped_column()
    last_schedule: Mapped[datetime | None] = mapped_column()
    successful_jobs_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_jobs_count: Mapped[int] = mapped_column(Integer, default=0)
    # When its last successful job ended (kept by the end of every job)
    last_success_at: Mapped[datetime | None] = mapped_column()
    # Deadline of each tick: a time of day HH:MM in its zone, or seconds after the due time
    deadline_time: Mapped[str | None] = mapped_column(String(5))
    deadline_after: Mapped[int | None] = mapped_column(Integer)
    # The next tick the deadline tracker starts tracking (None: not tracked)
    deadline_next_tick: Mapped[datetime | None] = mapped_column()
    # What an admin wants the next admin to know about it (free text)
    note: Mapped[str | None] = mapped_column(Text)

    config: Mapped[list[RunTemplateConfig]] = relationship(
        back_populates="runtemplate", cascade="all, delete-orphan", lazy="raise",
        order_by="RunTemplateConfig.key",
    )
    credentials: Mapped[list[RunTemplateCredential]] = relationship(
        back_populates="runtemplate", cascade="all, delete-orphan", lazy="raise"
    )
    tags: Mapped[list[RunTemplateTag]] = relationship(
        back_populates="runtemplate", cascade="all, delete-orphan", lazy="raise",
        order_by="RunTemplateTag.tag",
    )


class RunTemplateConfig(Base):
    """A configuration override of a run template (secret ones encrypted)."""

    __tablename__ = "runtemplate_config"
    __table_args__ = (UniqueConstraint("runtemplate_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    runtemplate_id: Mapped[int] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text, default="")
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)

    runtemplate: Mapped[RunTemplate] = relationship(back_populates="config", lazy="raise")


class RunTemplateCredential(Base):
    __tablename__ = "runtemplate_credential"

    runtemplate_id: Mapped[int] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="CASCADE"), primary_key=True
    )
    credential_id: Mapped[int] = mapped_column(
        ForeignKey("credential.id", ondelete="RESTRICT"), primary_key=True, index=True
    )

    runtemplate: Mapped[RunTemplate] = relationship(back_populates="credentials", lazy="raise")


class RunTemplateTag(Base):
    """A tag of a run template (lower case), for selecting templates: lists, bulk changes."""

    __tablename__ = "runtemplate_tag"

    runtemplate_id: Mapped[int] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)

    runtemplate: Mapped[RunTemplate] = relationship(back_populates="tags", lazy="raise")


# --- jobs ----------------------------------------------------------------------------------------

# The vocabulary is shared with the CLI and the TUI; the transitions are domain.jobstate.
JOB_STATES = states.JOB_STATES
FINAL_STATES = states.FINAL_STATES


class Job(Timestamped, Base):
    __tablename__ = "job"
    __table_args__ = (
        # One job per template tick, guaranteed by the database. Ad-hoc jobs have no tick,
        # and NULLs never collide in a unique constraint (SQLite and PostgreSQL alike).
        UniqueConstraint("runtemplate_id", "tick", name="uq_job_runtemplate_tick"),
        Index("ix_job_company_recent", "company_id", "id"),
        Index("ix_job_runtemplate_recent", "runtemplate_id", "id"),
        Index("ix_job_state", "state"),
        # A template never runs twice at once, on any node: at most one claimed or
        # running job per template, enforced by the database (and cheap to look up for
        # the claim).
        Index(
            "uq_job_one_held_per_template", "runtemplate_id", unique=True,
            postgresql_where=text("state IN ('claimed', 'running')"),
            sqlite_where=text("state IN ('claimed', 'running')"),
        ),
        Index(
            "ix_job_active", "node", "state",
            postgresql_where=text("state IN ('running', 'claimed', 'scheduled', 'pending')"),
            sqlite_where=text("state IN ('running', 'claimed', 'scheduled', 'pending')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    runtemplate_id: Mapped[int | None] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="SET NULL")
    )
    app_id: Mapped[int] = mapped_column(
        ForeignKey("application.id", ondelete="RESTRICT"), index=True
    )
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="RESTRICT"))
    runtemplate_name: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(16), default="scheduled")
    schedule_type: Mapped[str] = mapped_column(String(32), default="adhoc")
    # When the job was due (not before) and, for scheduler-made jobs, the template tick
    schedule: Mapped[datetime] = mapped_column(default=utcnow)
    tick: Mapped[datetime | None] = mapped_column()
    executor: Mapped[str] = mapped_column(String(32), default="Native")
    command: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # Resolved environment (secrets masked) with each value's source
    env: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # One-off overrides given at "run now" (secret values encrypted)
    overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    begin: Mapped[datetime | None] = mapped_column()
    end: Mapped[datetime | None] = mapped_column()
    exitcode: Mapped[int | None] = mapped_column(Integer)
    pid: Mapped[int | None] = mapped_column(Integer)
    launched_by: Mapped[str] = mapped_column(String(64), default="scheduler")
    # The node that claimed it (and runs or ran it), and when it claimed it
    node: Mapped[str | None] = mapped_column(String(255))
    claimed_at: Mapped[datetime | None] = mapped_column()
    reason: Mapped[str | None] = mapped_column(Text)
    timeout: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    retry_of_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("job.id", ondelete="SET NULL"), index=True
    )
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    output_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    output_dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    report_status: Mapped[str | None] = mapped_column(String(16))
    report_message: Mapped[str | None] = mapped_column(Text)
    report_metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class JobOutput(Base):
    """An ordered chunk of a job's output."""

    __tablename__ = "job_output"

    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("job.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream: Mapped[str] = mapped_column(String(8))  # stdout | stderr | system
    at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Schedule(Base):
    """The queue: one row per job waiting to run, not before ``after``."""

    __tablename__ = "schedule"
    # Queue order (claims read the head of the queue through it, ties by id: FIFO)
    __table_args__ = (Index("ix_schedule_due", "after", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("job.id", ondelete="CASCADE"), unique=True
    )
    runtemplate_id: Mapped[int | None] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="SET NULL"), index=True
    )
    after: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Artifact(Base):
    """A file a job left behind (or a record that it was skipped for its size)."""

    __tablename__ = "artifact"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("job.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str | None] = mapped_column(String(255))
    filename: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    content: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- actions after a job -------------------------------------------------------------------


class Action(Timestamped, Base):
    """What to do when a job ends: on one run template, or (``company_id``) on every
    template of a company that inherits its company's actions. ``config`` holds the
    module's keys; secret ones as ``{"encrypted": token}`` (see multiflexid.actions)."""

    __tablename__ = "action"

    id: Mapped[int] = mapped_column(primary_key=True)
    runtemplate_id: Mapped[int | None] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="CASCADE"), index=True)
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("company.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(16))  # success failure any recovery
    throttle: Mapped[str] = mapped_column(String(8), default="first")  # every | first
    module: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    note: Mapped[str | None] = mapped_column(Text)


class ActionRun(Base):
    """The delivery ledger (an outbox): one row per action a job's end (``job_id``) or a
    tick's missed or late deadline (``tick_id``; triggers missed, late) calls for, written
    in the transaction that records it, performed afterwards by a daemon's worker.
    ``config`` is the action's configuration as it was then (secrets still encrypted)."""

    __tablename__ = "action_run"
    __table_args__ = (
        UniqueConstraint("job_id", "action_id"),
        UniqueConstraint("tick_id", "action_id"),
        Index("ix_action_run_due", "state", "next_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    action_id: Mapped[int | None] = mapped_column(
        ForeignKey("action.id", ondelete="SET NULL"), index=True)
    job_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("job.id", ondelete="CASCADE"), index=True)
    # A tick's run: kept when its template (and so the tick) is removed — performing it
    # then fails saying so, instead of vanishing.
    tick_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("runtemplate_tick.id", ondelete="SET NULL"), index=True)
    runtemplate_id: Mapped[int | None] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="SET NULL"), index=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("company.id", ondelete="CASCADE"),
                                            index=True)
    module: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # pending running succeeded failed gave_up
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    next_at: Mapped[datetime] = mapped_column(default=utcnow)  # not before
    node: Mapped[str | None] = mapped_column(String(255))
    lease_until: Mapped[datetime | None] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[str | None] = mapped_column(Text)  # what the last attempt said
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AccessGrant(Base):
    """A Unix group's role, on one company or (company NULL) on every company. Grants in
    ``multiflexi.conf`` add to these."""

    __tablename__ = "access_grant"
    __table_args__ = (UniqueConstraint("group_name", "company_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_name: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    company_id: Mapped[int | None] = mapped_column(
        ForeignKey("company.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class AuditEntry(Base):
    """One change, as it was made: who, when, from where, what, and a field diff (secret
    values only as "changed"). Append-only: never updated or deleted (on PostgreSQL a
    trigger refuses it). No foreign keys: the record outlives what it is about."""

    __tablename__ = "audit"
    __table_args__ = (
        Index("ix_audit_company_recent", "company_id", "id"),
        Index("ix_audit_entity", "entity", "entity_id"),
        Index("ix_audit_runtemplate_recent", "runtemplate_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    user: Mapped[str] = mapped_column(String(64))  # the Unix user who made the change
    login_user: Mapped[str | None] = mapped_column(String(64))  # who logged in (sudo)
    via: Mapped[str] = mapped_column(String(16))  # socket | cli
    entity: Mapped[str] = mapped_column(String(32))  # company, runtemplate, job...
    entity_id: Mapped[int | None] = mapped_column(BigInteger)
    company_id: Mapped[int | None] = mapped_column(Integer)
    # the run template it concerns: the template, a job of it, an action on it
    runtemplate_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))  # created, changed, removed, run...
    summary: Mapped[str] = mapped_column(Text, default="")
    diff: Mapped[dict[str, Any]] = mapped_column(default=dict)  # field -> [before, after]


class RunTemplateTick(Timestamped, Base):
    """A tick of a template with a deadline, tracked until it is settled (the states are
    ``domain.deadline``; every write is ``store.deadlines``). Company and application are
    copied for the aggregates of monitoring."""

    __tablename__ = "runtemplate_tick"
    __table_args__ = (
        UniqueConstraint("runtemplate_id", "tick", name="uq_runtemplate_tick_runtemplate_tick"),
        # Open ticks whose deadline came (the tracker), settled ones in a window (check).
        Index("ix_runtemplate_tick_state_deadline", "state", "deadline"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    runtemplate_id: Mapped[int] = mapped_column(
        ForeignKey("runtemplate.id", ondelete="CASCADE"))
    company_id: Mapped[int] = mapped_column(
        ForeignKey("company.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("application.id", ondelete="CASCADE"),
                                        index=True)
    tick: Mapped[datetime] = mapped_column()
    deadline: Mapped[datetime] = mapped_column()
    state: Mapped[str] = mapped_column(String(16), default="open")
    # The latest job counted toward it
    job_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("job.id", ondelete="SET NULL"), index=True)
    # When it was found missed (kept when a late success follows: misses only add up)
    missed_at: Mapped[datetime | None] = mapped_column()
    settled_at: Mapped[datetime | None] = mapped_column()


class Node(Base):
    """A running ``multiflexid``: its lease says until when it is believed alive."""

    __tablename__ = "node"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)
    version: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="up")


# Plain tables for the hot statements (an ORM-enabled UPDATE/DELETE first works out which
# session objects it affects; these do not).
JOBS = cast(Table, Job.__table__)
JOB_OUTPUT = cast(Table, JobOutput.__table__)
RUNTEMPLATES = cast(Table, RunTemplate.__table__)
SCHEDULE = cast(Table, Schedule.__table__)
ACTIONS = cast(Table, Action.__table__)
ACTION_RUNS = cast(Table, ActionRun.__table__)
TICKS = cast(Table, RunTemplateTick.__table__)


M = TypeVar("M", bound=Base)


def as_loaded(cls: type[M], values: dict[str, Any]) -> M:
    """An object of ``cls`` holding ``values`` (its other columns None) the way the ORM
    holds a row it read — without the attribute events of its constructor, which cost
    ten times more. In no session: for the rows a statement wrote in bulk, handed on."""
    mapper = cast(Any, cls).__mapper__
    obj = cast(M, mapper.class_manager.new_instance())
    obj.__dict__.update(dict.fromkeys(mapper.column_attrs.keys()))
    obj.__dict__.update(values)
    return obj
