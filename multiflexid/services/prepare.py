"""Everything a claimed job needs before it can be launched, read in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from multiflexid.crypto import SecretBox
from multiflexid.domain.appdef import AppDefinition
from multiflexid.domain.cmdline import CommandError, build_argv
from multiflexid.domain.config import mask_text
from multiflexid.executors.base import Limits
from multiflexid.store.orm import Company, Job

from .apps import get_app, to_definition
from .jobs import decrypt_overrides
from .runtemplates import get_runtemplate, resolve_env

# Variables of the daemon's own environment a job inherits (nothing else leaks: not
# the database URL, not NOTIFY_SOCKET).
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "USER", "LOGNAME")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass
class Prepared:
    job_id: int
    executor: str
    log_fields: dict[str, Any]
    blocked: str | None = None  # why the job cannot start (nothing is launched)
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    shown_command: list[str] = field(default_factory=list)
    env_doc: dict[str, Any] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)
    workdir: Path | None = None
    timeout: float | None = None
    image: str | None = None
    limits: Limits = field(default_factory=Limits)
    app: AppDefinition | None = None
    runtemplate_id: int | None = None
    company_slug: str = ""


def prepare(
    s: Session, job_id: int, box: SecretBox, jobs_dir: Path, base_env: dict[str, str]
) -> Prepared:
    job = s.get(Job, job_id)
    assert job is not None, job_id
    company = s.get(Company, job.company_id)
    app_row = get_app(s, job.app_id, parts=True)
    app = to_definition(app_row)
    slug = company.slug if company else "?"
    prep = Prepared(
        job_id=job_id,
        executor=job.executor,
        log_fields={
            "MULTIFLEXI_JOB_ID": job_id,
            "MULTIFLEXI_RUNTEMPLATE_ID": job.runtemplate_id,
            "MULTIFLEXI_COMPANY": slug,
            "MULTIFLEXI_APP": app.name,
        },
        app=app,
        runtemplate_id=job.runtemplate_id,
        company_slug=slug,
        timeout=float(job.timeout) if job.timeout else None,
    )
    if job.runtemplate_id is None:
        prep.blocked = "its run template was removed"
        return prep
    rt = get_runtemplate(s, job.runtemplate_id)
    if not app_row.enabled:
        prep.blocked = f"application {app.name!r} is disabled"
        return prep
    if company is not None and not company.enabled:
        prep.blocked = f"company {slug} is disabled"
        return prep
    workdir = jobs_dir / str(job_id)
    overrides, _secret = decrypt_overrides(job.overrides, box)
    resolved = resolve_env(
        s, rt, box, overrides=overrides, job_id=job_id, job_dir=str(workdir),
        executor=job.executor,
    )
    prep.secrets = resolved.secrets()
    prep.env_doc = {
        "values": resolved.masked(),
        "sources": {k: v.source for k, v in resolved.values.items()},
    }
    if not resolved.ok:
        prep.blocked = resolved.blocked_reason
        return prep
    environ = resolved.environ()
    try:
        argv = build_argv(app.executable, app.cmdparams, environ)
    except CommandError as exc:
        prep.blocked = f"application {app.name!r}: {exc}"
        return prep
    prep.argv = argv
    prep.shown_command = [mask_text(a, prep.secrets) for a in argv]
    if job.executor == "Native":
        prep.env = {**{k: v for k, v in base_env.items() if k in INHERITED}, **environ}
        prep.env.setdefault("PATH", DEFAULT_PATH)
    else:  # a container keeps its image's PATH and HOME
        prep.env = dict(environ)
    prep.workdir = workdir
    prep.image = rt.ociimage or app.ociimage
    prep.limits = Limits(
        memory=rt.memory_limit, cpus=rt.cpu_limit, pids=rt.pids_limit, network=rt.network
    )
    if job.executor == "Podman" and not prep.image:
        prep.blocked = (f"the Podman executor needs an image: application {app.name!r} has no "
                        "ociimage and the run template sets none")
    return prep
