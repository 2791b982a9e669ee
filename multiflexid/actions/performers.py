"""How each module performs an action: from the job summary and the (decrypted)
configuration to a :class:`Result`. Nothing here changes a job: a failing action only
fails its own run.

What counts as temporary (retried with backoff): connection refused or reset, a timeout,
HTTP 5xx and 429, a failed Notify delivery (Apprise does not tell an SMTP 4xx from a 5xx:
only a URL it does not load fails for good), a command's exit code 75 (EX_TEMPFAIL) or its
timeout. Anything else is a failure for good.
The state-changing modules (ChainRuntemplate, Reschedule, Stop) are in ``chain.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import shlex
import socket
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from multiflexi import __version__
from multiflexid.domain.config import mask_text

from .ledger import Result
from .summary import headline, text_body

USER_AGENT = f"MultiFlexi/{__version__}"
SIGNATURE_HEADER = "X-MultiFlexi-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass
class Context:
    """What a performer gets."""

    summary: dict[str, Any]
    config: dict[str, Any]  # decrypted
    idempotency_key: str
    secrets: list[str] = field(default_factory=list)  # to mask in what is kept
    # A write transaction (the daemon's database thread, or the CLI's session).
    write: Callable[..., Awaitable[Any]] | None = None
    dry_run: bool = False  # `action test` of a module that changes state
    on_jobs: Callable[[list[int]], None] = lambda _ids: None
    on_template: Callable[[int], None] = lambda _rt: None

    def mask(self, text: str) -> str:
        return mask_text(text, self.secrets)


Performer = Callable[[Context], Awaitable[Result]]


# --- HTTP ------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int | None
    body: bytes
    error: str | None = None  # no answer: why
    transient: bool = False


def _http(method: str, url: str, body: bytes, headers: dict[str, str], timeout: float
          ) -> Answer:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.read(65536))
    except urllib.error.HTTPError as exc:
        data = exc.read(4096) if exc.fp is not None else b""
        return Answer(exc.code, data, transient=exc.code >= 500 or exc.code == 429)
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return Answer(None, b"", f"no answer within {timeout:g} s", True)
        text = getattr(reason, "strerror", None) or str(reason)
        return Answer(None, b"", f"cannot connect: {text}", True)
    except TimeoutError:
        return Answer(None, b"", f"no answer within {timeout:g} s", True)
    except (ConnectionError, OSError) as exc:
        return Answer(None, b"", f"connection failed: {exc.strerror or exc}", True)


async def http(method: str, url: str, body: bytes, headers: dict[str, str],
               wait: float) -> Answer:
    """One request in a thread; ``wait`` bounds the connect and each read."""
    return await asyncio.to_thread(_http, method, url, body,
                                   {"User-Agent": USER_AGENT, **headers}, wait)


def _first_line(data: bytes, limit: int = 200) -> str:
    text = data.decode("utf-8", "replace").strip()
    return (text.splitlines() or [""])[0][:limit]


def _http_result(ctx: Context, answer: Answer, what: str, ok_text: str | None = None
                 ) -> Result:
    if answer.status is None:
        return Result(False, ctx.mask(f"{what}: {answer.error}"), transient=answer.transient)
    if 200 <= answer.status < 300:
        return Result(True, ctx.mask(ok_text or f"{what}: HTTP {answer.status}"),
                      status_code=answer.status)
    line = _first_line(answer.body)
    return Result(False, ctx.mask(f"{what}: HTTP {answer.status}" + (f": {line}" if line
                                                                    else "")),
                  transient=answer.transient, status_code=answer.status)


def signature(secret: str, body: bytes) -> str:
    """The ``X-MultiFlexi-Signature`` value: ``sha256=<hex HMAC-SHA256 of the body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def webhook(ctx: Context) -> Result:
    cfg = ctx.config
    body = json.dumps(ctx.summary, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: ctx.idempotency_key}
    for header in cfg.get("header") or []:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    if cfg.get("secret"):
        headers[SIGNATURE_HEADER] = signature(cfg["secret"], body)
    answer = await http("POST", cfg["uri"], body, headers, float(cfg.get("timeout") or 10))
    return _http_result(ctx, answer, f"POST {_where(cfg['uri'])}")


def _where(url: str) -> str:
    """A URL without its query and credentials (they may hold tokens)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _issue_text(summary: dict[str, Any]) -> tuple[str, str]:
    title = "[MultiFlexi] " + headline(summary)
    body = text_body(summary)
    return title, body


async def github(ctx: Context) -> Result:
    cfg = ctx.config
    repo = cfg.get("repository") or _github_repo(ctx.summary["application"].get("homepage"))
    if not repo:
        return Result(False, "repository: not set, and the application's homepage is not a "
                             "GitHub repository")
    title, body = _issue_text(ctx.summary)
    payload = json.dumps({"title": title, "body": "```\n" + body + "```\n"}).encode()
    url = cfg.get("api_url", "https://api.github.com").rstrip("/") + f"/repos/{repo}/issues"
    answer = await http("POST", url, payload, {
        "Authorization": f"Bearer {cfg['token']}", "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28", "Content-Type": "application/json",
    }, float(cfg.get("timeout") or 10))
    ok_text = None
    if answer.status is not None and 200 <= answer.status < 300:
        issue = _json(answer.body)
        ok_text = f"issue #{issue.get('number', '?')} opened in {repo}" + (
            f": {issue['html_url']}" if issue.get("html_url") else "")
    return _http_result(ctx, answer, f"GitHub {repo}", ok_text)


def _github_repo(homepage: str | None) -> str | None:
    if not homepage:
        return None
    parts = urlsplit(homepage)
    path = [p for p in parts.path.split("/") if p]
    if parts.hostname in ("github.com", "www.github.com") and len(path) >= 2:
        return f"{path[0]}/{path[1].removesuffix('.git')}"
    return None


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def redmine(ctx: Context) -> Result:
    cfg = ctx.config
    title, body = _issue_text(ctx.summary)
    issue: dict[str, Any] = {"project_id": cfg["project_id"], "subject": title[:255],
                             "description": "<pre>\n" + body + "</pre>\n"}
    if cfg.get("tracker_id"):
        issue["tracker_id"] = cfg["tracker_id"]
    base = cfg["url"].rstrip("/")
    answer = await http("POST", f"{base}/issues.json", json.dumps({"issue": issue}).encode(), {
        "X-Redmine-API-Key": cfg["token"], "Content-Type": "application/json",
    }, float(cfg.get("timeout") or 10))
    ok_text = None
    if answer.status is not None and 200 <= answer.status < 300:
        number = (_json(answer.body).get("issue") or {}).get("id", "?")
        ok_text = f"issue #{number} opened: {base}/issues/{number}"
    return _http_result(ctx, answer, f"Redmine {_where(base)}", ok_text)


# --- Notify (Apprise) -------------------------------------------------------------------------

_apprise_log = logging.getLogger("apprise")
_apprise_log.propagate = False  # its lines may name services; what matters is kept below


def _schemes(urls: list[str]) -> str:
    return ", ".join(sorted({u.split("://", 1)[0] for u in urls}))


def _notify(urls: list[str], title: str, body: str) -> tuple[bool, str, list[str]]:
    """(sent, what Apprise logged, the URLs it does not load — nothing is sent then)."""
    import apprise

    ap = apprise.Apprise()
    unloaded = [url for url in urls if not ap.add(url)]
    if unloaded:
        return False, "", unloaded
    with apprise.LogCapture(level=logging.WARNING) as captured:
        result = ap.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT)
    return bool(result), captured.getvalue(), []


async def notify(ctx: Context) -> Result:
    """A URL Apprise does not load (checked when the action was added: its scheme went
    away since, say, with an Apprise upgrade) fails at once — trying again cannot help.
    Any other failure is tried again: Apprise tells only "failed" (and, since 2.x, "timed
    out"), never an SMTP reply code or an HTTP status, so a refused mailbox cannot be told
    from a full one."""
    urls = list(ctx.config["url"])
    summary = ctx.summary
    title = "[MultiFlexi] " + headline(summary)
    ok, log, unloaded = await asyncio.to_thread(_notify, urls, title, text_body(summary))
    schemes = _schemes(urls)
    if ok:
        return Result(True, f"sent to {len(urls)} service(s) ({schemes})")
    if unloaded:
        return Result(False, f"not sent: this Apprise does not load {len(unloaded)} of the "
                             f"URLs ({_schemes(unloaded)}://...): fix the action's url "
                             "(`action modules`, https://github.com/caronc/apprise/wiki)")
    lines = [line.split(" - ", 2)[-1] for line in log.strip().splitlines() if line.strip()]
    reason = "; ".join(dict.fromkeys(lines)) or "Apprise reported a failure"
    return Result(False, ctx.mask(f"not sent ({schemes}): {reason}"), transient=True)


# --- CustomCommand ------------------------------------------------------------------------------

EX_TEMPFAIL = 75


def command_env(summary: dict[str, Any]) -> dict[str, str]:
    """The summary as MULTIFLEXI_* variables (besides the JSON on stdin); a tick's adds
    MULTIFLEXI_TICK* and MULTIFLEXI_DEADLINE, its job's are empty when it has none."""
    job = summary["job"] or {}
    tick = summary.get("tick") or {}
    meaning = job.get("exit_meaning") or {}
    values = {
        "MULTIFLEXI_EVENT": summary["event"],
        "MULTIFLEXI_TICK_ID": tick.get("id"), "MULTIFLEXI_TICK": tick.get("tick"),
        "MULTIFLEXI_DEADLINE": tick.get("deadline"),
        "MULTIFLEXI_TICK_OUTCOME": tick.get("outcome"),
        "MULTIFLEXI_JOB_ID": job.get("id"), "MULTIFLEXI_JOB_STATE": job.get("state"),
        "MULTIFLEXI_EXIT_CODE": job.get("exitcode"),
        "MULTIFLEXI_EXIT_MEANING": meaning.get("description"),
        "MULTIFLEXI_JOB_REASON": job.get("reason"),
        "MULTIFLEXI_JOB_BEGIN": job.get("begin"), "MULTIFLEXI_JOB_END": job.get("end"),
        "MULTIFLEXI_JOB_ATTEMPT": job.get("attempt"), "MULTIFLEXI_NODE": job.get("node"),
        "MULTIFLEXI_LAUNCHED_BY": job.get("launched_by"),
        "MULTIFLEXI_TRIGGER": summary["trigger"],
        "MULTIFLEXI_COMPANY_ID": summary["company"]["id"],
        "MULTIFLEXI_COMPANY_SLUG": summary["company"]["slug"],
        "MULTIFLEXI_COMPANY_CODE": summary["company"]["slug"],
        "MULTIFLEXI_COMPANY_NAME": summary["company"]["name"],
        "MULTIFLEXI_RUNTEMPLATE_ID": summary["runtemplate"]["id"],
        "MULTIFLEXI_RUNTEMPLATE_NAME": summary["runtemplate"]["name"],
        "MULTIFLEXI_APPLICATION_ID": summary["application"]["id"],
        "MULTIFLEXI_APPLICATION_NAME": summary["application"]["name"],
        "MULTIFLEXI_ACTION_ID": summary["action"].get("id"),
        "MULTIFLEXI_ACTION": summary["action"].get("module"),
    }
    return {k: "" if v is None else str(v) for k, v in values.items()}


async def custom_command(ctx: Context) -> Result:
    argv = shlex.split(ctx.config["command"])
    timeout = float(ctx.config.get("timeout") or 60)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           **command_env(ctx.summary)}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True)
    except OSError as exc:
        return Result(False, ctx.mask(f"cannot run {argv[0]}: {exc.strerror or exc}"))
    data = json.dumps(ctx.summary, ensure_ascii=False).encode()
    try:
        out, _ = await asyncio.wait_for(proc.communicate(data), timeout)
    except TimeoutError:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, 9)
        await proc.wait()
        return Result(False, f"{argv[0]}: stopped after its timeout of {timeout:g} s",
                      transient=True)
    last = (out.decode("utf-8", "replace").strip().splitlines() or [""])[-1][:300]
    code = proc.returncode
    text = ctx.mask(f"{argv[0]} exited {code}" + (f": {last}" if last else ""))
    return Result(code == 0, text, transient=code == EX_TEMPFAIL, status_code=code)


PERFORMERS: dict[str, Performer] = {
    "WebHook": webhook,
    "Notify": notify,
    "CustomCommand": custom_command,
    "Github": github,
    "RedmineIssue": redmine,
}
