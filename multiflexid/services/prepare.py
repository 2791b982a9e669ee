"""Everything a claimed job needs before it can be launched.

What does not change from one job of a template to the next (the app definition, the
template's settings and configuration, its credentials, decrypted) is kept in a
:class:`LaunchCache`, keyed by the ``updated_at`` of the template, its app, its company and
its credentials (the services bump them on every change). The rows a launch needs are
read with the claim (``JobTransitions.claim_to_launch``), so a job whose template is
cached needs no read at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multiflexid.crypto import SecretBox
from multiflexid.domain.appdef import AppDefinition
from multiflexid.domain.cmdline import CommandError, build_argv
from multiflexid.domain.config import mask_text
from multiflexid.executors.base import Limits

from .environment import TemplateContext, environment
from .jobs import decrypt_overrides

# Variables of the daemon's own environment a native job inherits (nothing else leaks:
# not the database URL, not NOTIFY_SOCKET).
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
    attempt: int = 1


@dataclass(frozen=True)
class Launch:
    """What launching any job of a template with no one-off values is, but the job's id
    and directory: its environment resolved and its command built once per version of
    the template (and executor), not once per job."""

    argv: list[str]
    shown_command: list[str]
    env: dict[str, str]  # the process's, without the per-job variables
    values: dict[str, str]  # the environment's record (masked), likewise
    sources: dict[str, str]
    secrets: list[str]


# Stand-ins for the job's id and directory while a template's launch is resolved: a
# template whose values use them (a default "{MULTIFLEXI_JOB_ID}", a relative
# RESULT_FILE) is resolved for every job instead.
_ANY_JOB = "\x00job\x00"
_ANY_DIR = "\x00dir\x00"
PER_JOB = ("MULTIFLEXI_JOB_ID", "MULTIFLEXI_TMP")


class LaunchCache:
    def __init__(self) -> None:
        self._items: dict[int, TemplateContext] = {}
        # (template, executor) -> (the context it was made from, its launch or None)
        self._launches: dict[tuple[int, str], tuple[TemplateContext, Launch | None]] = {}
        self.hits = 0
        self.misses = 0

    def launch(self, ctx: TemplateContext, executor: str, base_env: dict[str, str]
               ) -> Launch | None:
        """The template's launch (None: each job is resolved on its own)."""
        key = (ctx.who.rt_id, executor)
        made = self._launches.get(key)
        if made is None or made[0] is not ctx:
            made = self._launches[key] = (ctx, _launch_of(ctx, executor, base_env))
        return made[1]

    def get(self, rt_id: int, key: tuple[Any, ...]) -> TemplateContext | None:
        ctx = self._items.get(rt_id)
        if ctx is not None and ctx.key == key:
            self.hits += 1
            return ctx
        self.misses += 1
        return None

    def put(self, ctx: TemplateContext) -> None:
        self._items[ctx.who.rt_id] = ctx


def job_dir(jobs_dir: Path, job_id: int) -> Path:
    """A job's own directory (MULTIFLEXI_TMP, its working directory)."""
    return jobs_dir / str(job_id)


def context_key(row: Any) -> tuple[int | None, tuple[Any, ...]]:
    """(template id, the versions its cached context must have been built from)."""
    return row[1], tuple(row[9:])


def _launch_of(ctx: TemplateContext, executor: str, base_env: dict[str, str]
               ) -> Launch | None:
    """The template's launch, if nothing in it depends on the job."""
    resolved = environment(ctx, executor=executor, job_id=_ANY_JOB, job_dir=_ANY_DIR)
    if not resolved.ok:
        return None
    environ = resolved.environ()
    try:
        argv = build_argv(ctx.app.executable, ctx.app.cmdparams, environ)
    except CommandError:
        return None
    values = resolved.masked()
    secrets = resolved.secrets()
    for key in PER_JOB:
        del environ[key], values[key]
    texts = [*environ.values(), *values.values(), *argv, *secrets]
    if any(_ANY_JOB in t or _ANY_DIR in t for t in texts):
        return None
    return Launch(argv=argv, shown_command=[mask_text(a, secrets) for a in argv],
                  env=_process_env(executor, environ, base_env), values=values,
                  sources={k: v.source for k, v in resolved.values.items()}, secrets=secrets)


def _process_env(executor: str, environ: dict[str, str], base_env: dict[str, str]
                 ) -> dict[str, str]:
    if executor != "Native":  # a container keeps its image's PATH and HOME
        return dict(environ)
    env = {**{k: v for k, v in base_env.items() if k in INHERITED}, **environ}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


def prepare_row(
    row: Any, ctx: TemplateContext | None, box: SecretBox, jobs_dir: Path,
    base_env: dict[str, str], cache: LaunchCache | None = None,
) -> Prepared:
    """Everything to launch the job of ``row`` given its template's context; no I/O.
    With ``cache``, a job with no one-off values uses its template's :class:`Launch`."""
    (job_id, rt_id, _app_id, executor, timeout, overrides, attempt, slug, app_name,
     *_versions) = row
    prep = Prepared(
        job_id=job_id,
        executor=executor,
        log_fields={
            "MULTIFLEXI_JOB_ID": job_id,
            "MULTIFLEXI_RUNTEMPLATE_ID": rt_id,
            "MULTIFLEXI_COMPANY": slug,
            "MULTIFLEXI_APP": app_name,
        },
        runtemplate_id=rt_id,
        company_slug=slug,
        timeout=float(timeout) if timeout else None,
        attempt=attempt,
    )
    if rt_id is None or ctx is None:
        prep.blocked = "its run template was removed"
        return prep
    prep.app = ctx.app
    if not ctx.app_enabled:
        prep.blocked = f"application {ctx.app.name!r} is disabled"
        return prep
    if not ctx.company_enabled:
        prep.blocked = f"company {ctx.who.company_slug} is disabled"
        return prep
    workdir = job_dir(jobs_dir, job_id)
    prep.workdir = workdir
    prep.image = ctx.rt_ociimage or ctx.app.ociimage
    prep.limits = ctx.limits
    launch = cache.launch(ctx, executor, base_env) if cache and not overrides else None
    if launch is not None:
        mine = {"MULTIFLEXI_JOB_ID": str(job_id), "MULTIFLEXI_TMP": str(workdir)}
        prep.argv, prep.shown_command = list(launch.argv), list(launch.shown_command)
        prep.env = {**launch.env, **mine}
        prep.env_doc = {"values": {**launch.values, **mine}, "sources": launch.sources}
        prep.secrets = launch.secrets
        return _needs_image(prep, ctx)
    one_off, one_off_secret = decrypt_overrides(overrides or {}, box)
    resolved = environment(ctx, executor=executor, overrides=one_off,
                           override_secret=one_off_secret, job_id=job_id,
                           job_dir=str(workdir))
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
        argv = build_argv(ctx.app.executable, ctx.app.cmdparams, environ)
    except CommandError as exc:
        prep.blocked = f"application {ctx.app.name!r}: {exc}"
        return prep
    prep.argv = argv
    prep.shown_command = [mask_text(a, prep.secrets) for a in argv]
    prep.env = _process_env(executor, environ, base_env)
    return _needs_image(prep, ctx)


def _needs_image(prep: Prepared, ctx: TemplateContext) -> Prepared:
    if prep.executor != "Native" and not prep.image:
        prep.blocked = (f"the {prep.executor} executor needs an image: application "
                        f"{ctx.app.name!r} has no ociimage and the run template sets none")
    return prep


