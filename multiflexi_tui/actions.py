"""What the admin does to the daemon's objects, shared by the lists and the detail screens:
run now, cancel, enable/disable, open a job, edit and clone. Each asks first where it
must, calls the daemon in a worker (the UI never waits on the socket) and reports the
outcome."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.widget import Widget

from multiflexi.errors import MultiFlexiError
from multiflexi_tui import format as fmt
from multiflexi_tui.connection import link_of
from multiflexi_tui.messages import Open


def open_job(node: Widget, job_id: int, tab: str | None = None) -> None:
    node.post_message(Open("job", {"id": job_id}, tab))


def run_template(node: Widget, rt: dict[str, Any]) -> None:
    """Confirm (with optional one-off overrides), run, then follow the new job's output."""
    from multiflexi_tui.screens.run_now import RunNowScreen

    def started(job: dict[str, Any] | None) -> None:
        if job:  # posted by the app: the node may be a modal that is gone by now
            node.app.post_message(Open("job", {"id": int(job["id"])}, "output"))

    node.app.push_screen(RunNowScreen(rt), started)


def cancel_job(node: Widget, job: dict[str, Any]) -> None:
    from multiflexi_tui.screens.confirm import ConfirmScreen

    state = job.get("state")
    if state in fmt.FINAL_STATES:
        node.notify(f"job #{job['id']} is already {state}; nothing to cancel",
                    severity="warning")
        return

    async def cancel() -> None:
        try:
            reply = await link_of(node).call("job.cancel", id=job["id"])
        except MultiFlexiError as exc:
            node.notify(exc.message, title="Cannot cancel", severity="error")
            return
        if reply.get("cancel") == "requested":
            node.notify(f"job #{job['id']}: cancel requested; it is being stopped")
        else:
            node.notify(f"job #{job['id']} cancelled before it started")

    def confirmed(yes: bool | None) -> None:
        if yes:
            node.run_worker(cancel(), group="cancel", exit_on_error=False)

    name = job.get("runtemplate_name") or ""
    node.app.push_screen(
        ConfirmScreen(f"Cancel job #{job['id']} {name} ({state})?",
                      "A running job gets SIGTERM, then SIGKILL after the grace time."),
        confirmed,
    )


def toggle_active(node: Widget, rt: dict[str, Any]) -> None:
    """Enable a disabled template or disable an enabled one (no confirmation: reversible)."""
    active = not rt.get("active")

    async def toggle() -> None:
        try:
            view = await link_of(node).call("runtemplate.set_active", id=rt["id"],
                                            active=active)
        except MultiFlexiError as exc:
            node.notify(exc.message, title="Cannot change the template", severity="error")
            return
        word = "enabled" if view.get("active") else "disabled"
        nxt = fmt.short_time(view.get("next_schedule"))
        node.notify(f"{view.get('name')} {word}" + (f"; next run {nxt}" if active else ""))

    node.run_worker(toggle(), group="toggle", exit_on_error=False)


Done = Callable[[dict[str, Any] | None], None]


def _saved(node: Widget, what: Callable[[dict[str, Any]], str], then: Done | None) -> Done:
    def done(record: dict[str, Any] | None) -> None:
        if record:
            node.notify(what(record))
        if then is not None:
            then(record)
    return done


def edit_company(node: Widget, company: dict[str, Any] | None, then: Done | None = None) -> None:
    """The company form: a new company (``company`` None) or changes to one."""
    from multiflexi_tui.screens.company_form import CompanyFormScreen

    verb = "created" if company is None else "saved"
    node.app.push_screen(CompanyFormScreen(company), _saved(
        node, lambda c: f"company {c['slug']} {verb}", then))


def edit_credential(node: Widget, company: dict[str, Any], cred: dict[str, Any] | None,
                    then: Done | None = None) -> None:
    """The credential form: a new credential of ``company`` or changes to ``cred``."""
    from multiflexi_tui.screens.credential_form import CredentialFormScreen

    verb = "created" if cred is None else "saved"
    node.app.push_screen(CredentialFormScreen(company, cred), _saved(
        node, lambda c: f"credential #{c['id']} {c.get('name')} {verb}", then))


def edit_template(node: Widget, rt: dict[str, Any], then: Done | None = None) -> None:
    """The template editor: schedule, executor, timeout, configuration, credentials, tags
    and note."""
    from multiflexi_tui.screens.template_edit import TemplateEditScreen

    node.app.push_screen(TemplateEditScreen(rt), _saved(
        node, lambda r: f"run template #{r['id']} {r.get('name')} saved", then))


def clone(node: Widget, kind: str, rec: dict[str, Any], then: Done | None = None) -> None:
    """Copy a run template (``kind`` "runtemplate", created disabled) or a credential, to
    the same or another company."""
    from multiflexi_tui.screens.clone import CloneScreen

    def said(new: dict[str, Any]) -> str:
        if kind == "runtemplate":
            return (f"run template #{new['id']} {new.get('name')} created for "
                    f"{new.get('company')}, disabled: review it, then enable it (t)")
        return f"credential #{new['id']} {new.get('name')} created for {new.get('company')}"

    node.app.push_screen(CloneScreen(kind, rec), _saved(node, said, then))
