"""The socket methods behind the TUI's forms (company.create|update, credential_type.list,
credential.create|update, runtemplate.update, app.import) on SQLite and PostgreSQL: they
change what the CLI's services change, name the bad field in ``data.field``, leave an
audit record, and refuse a viewer."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from multiflexi import examples
from multiflexi.errors import Conflict, InvalidInput
from multiflexid.core import Core
from multiflexid.domain.credjson import parse_credential_type
from multiflexid.services import access, companies, credentials, runtemplates
from multiflexid.store.types import utcnow
from tests.conftest import Env
from tests.support.factory import make_template, shell_app
from tests.support.inproc import daemon_in_process
from tests.support.nobody import calls_as_nobody, public_socket


@pytest.fixture
def public_env(mf_env: Env) -> Iterator[Env]:
    with public_socket(mf_env) as env:
        yield env


def _site(core: Core) -> dict[str, int]:
    rt = make_template(core, app_doc=shell_app("Shell", "echo hi"), company="acme",
                       name="tpl", config={"SCRIPT": "echo hi"})
    with core.db.session() as s:
        for path in examples.credential_type_files():
            credentials.upsert_credential_type(
                s, parse_credential_type(path.read_text(), str(path)))
        company_id = runtemplates.get_runtemplate(s, rt).company_id
        # nobody's group may look at every company
        access.grant(s, "nogroup", "viewer", None, utcnow(), "test")
    return {"rt": rt, "acme": company_id}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _refused(call: Any, kind: type[Exception]) -> Any:
    with pytest.raises(kind) as info:
        await call
    return info.value


def test_company_create_and_update(public_env: Env, core: Core) -> None:
    _site(core)

    async def scenario() -> None:
        async with daemon_in_process(public_env) as d:
            made = await d.call("company.create", name="Initech", slug="initech",
                                email="it@initech.example")
            assert (made["slug"], made["email"], made["enabled"]) == (
                "initech", "it@initech.example", True)
            changed = await d.call("company.update", id=made["id"], name="Initech a.s.",
                                   ic="11223344", enabled=False)
            assert (changed["name"], changed["ic"], changed["enabled"]) == (
                "Initech a.s.", "11223344", False)
            bad = await _refused(d.call("company.update", id=made["id"], email="nope"),
                                 InvalidInput)
            assert bad.data["field"] == "params.email" and "email" in bad.message
            taken = await _refused(d.call("company.create", name="X", slug="ACME"), Conflict)
            assert taken.data["field"] == "params.slug"
            audit = await d.call("audit.list", company_id=made["id"])
            assert {e["action"] for e in audit["items"]} >= {"created", "changed"}

    run(scenario())
    with core.db.session() as s:
        assert companies.get_company(s, "initech").name == "Initech a.s."


def test_credentials_created_and_edited_secrets_never_in_clear(public_env: Env,
                                                             core: Core) -> None:
    ids = _site(core)

    async def scenario() -> None:
        async with daemon_in_process(public_env) as d:
            types = {t["code"]: t for t in (await d.call("credential_type.list"))["items"]}
            probe = {f["keyword"]: f for f in types["Probe"]["fields"]}
            assert (probe["PASSWORD"]["secret"], probe["PROBE_SLEEP"]["check"],
                    probe["APP_DEBUG"]["check"]) == (True, "float", "bool")
            cred = await d.call("credential.create", company_id=ids["acme"], type="Probe",
                                name="probe", values={"PASSWORD": "pw-1", "PROBE_SLEEP": "2"})
            assert cred["values"]["PASSWORD"] != "pw-1"  # masked
            assert cred["values"]["PROBE_SLEEP"] == "2"
            bad = await _refused(d.call("credential.update", id=cred["id"],
                                        values={"PROBE_SLEEP": "soon"}), InvalidInput)
            assert bad.data["field"] == "params.values.PROBE_SLEEP"
            missing = await _refused(d.call("credential.create", company_id=ids["acme"],
                                            type="Probe", name="other", values={}),
                                     InvalidInput)
            assert "PASSWORD" in missing.message
            edited = await d.call("credential.update", id=cred["id"], name="probe 2",
                                  values={"PASSWORD": "pw-2"})
            assert edited["name"] == "probe 2" and "pw-2" not in json.dumps(edited)
            audit = await d.call("audit.list", company_id=ids["acme"])
            assert "pw-2" not in json.dumps(audit) and "pw-1" not in json.dumps(audit)
            return cred["id"]

    cred_id = run(scenario())
    with core.db.session() as s:
        cred = credentials.get_credential(s, cred_id)
        assert credentials.credential_values(cred, core.box, reveal=True)["PASSWORD"] == "pw-2"


def test_runtemplate_update_config_schedule_executor_credentials(public_env: Env,
                                                                core: Core) -> None:
    ids = _site(core)

    async def scenario() -> None:
        async with daemon_in_process(public_env) as d:
            cred = await d.call("credential.create", company_id=ids["acme"], type="Probe",
                                name="probe", values={"PASSWORD": "pw"})
            rt = await d.call("runtemplate.update", id=ids["rt"], name="renamed",
                              interv="c", cron="30 2 * * *", timezone="Europe/Prague",
                              delay=5, timeout=60, deadline="07:00",
                              config={"SCRIPT": "echo edited"}, credentials=[cred["id"]])
            assert (rt["name"], rt["interv"], rt["cron"], rt["timezone"], rt["delay"],
                    rt["timeout"], rt["deadline"], rt["credentials"]) == (
                "renamed", "c", "30 2 * * *", "Europe/Prague", 5, 60, "07:00", [cred["id"]])
            env = await d.call("runtemplate.env", id=ids["rt"])
            script = next(e for e in env["environment"] if e["key"] == "SCRIPT")
            assert (script["value"], script["source"]) == ("echo edited", "run template")
            bad = await _refused(d.call("runtemplate.update", id=ids["rt"],
                                        timezone="Mars/Olympus"), InvalidInput)
            assert bad.data["field"] == "params.timezone"
            no_image = await _refused(d.call("runtemplate.update", id=ids["rt"],
                                             executor="Docker"), InvalidInput)
            assert no_image.data["field"] == "params.executor"
            rt = await d.call("runtemplate.update", id=ids["rt"], credentials=[], timeout=0,
                              deadline="")
            assert (rt["credentials"], rt["timeout"], rt["deadline"]) == ([], 0, None)
            audit = await d.call("audit.list", runtemplate_id=ids["rt"])
            assert any(e["action"] == "changed" for e in audit["items"])

    run(scenario())


def test_app_import_content_errors_name_the_json_path(public_env: Env, core: Core) -> None:
    _site(core)
    doc = shell_app("Imported", "echo imported")

    async def scenario() -> None:
        async with daemon_in_process(public_env) as d:
            done = await d.call("app.import", content=json.dumps(doc), file="imported.json")
            assert done["created"] and done["app"]["name"] == "Imported"
            again = await d.call("app.import", content=json.dumps(doc), file="imported.json")
            assert not again["created"] and again["app"]["id"] == done["app"]["id"]
            broken = {**doc, "executable": 5}
            bad = await _refused(d.call("app.import", content=json.dumps(broken),
                                        file="broken.json"), InvalidInput)
            assert bad.message.startswith("$.executable: "), bad.message
            assert bad.data["field"] == "$.executable"
            invalid = await _refused(d.call("app.import", content="{", file="x.json"),
                                     InvalidInput)
            assert invalid.message.startswith("x.json:1:"), invalid.message

    run(scenario())


@pytest.mark.root_only
def test_a_viewer_may_not_edit(public_env: Env, core: Core) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (switches to uid 65534); make test leaves it out otherwise")
    ids = _site(core)
    calls = [
        ("company.get", {"id": ids["acme"]}),  # seeing is allowed
        ("company.create", {"name": "X", "slug": "x"}),
        ("company.update", {"id": ids["acme"], "name": "Hacked"}),
        ("credential.create", {"company_id": ids["acme"], "type": "Probe", "name": "p",
                               "values": {"PASSWORD": "x"}}),
        ("runtemplate.update", {"id": ids["rt"], "config": {"SCRIPT": "rm -rf /"}}),
        ("app.import", {"content": json.dumps(shell_app("Evil", "echo")), "file": "e.json"}),
    ]

    async def scenario() -> dict[str, str]:
        async with daemon_in_process(public_env) as d:
            await d.call("credential_type.list")
            return dict(await calls_as_nobody(public_env.socket, calls))

    got = run(scenario())
    assert got.pop("company.get") == "ok"
    for method, answer in got.items():
        assert answer.startswith(f"forbidden: {method} needs role admin"), (method, answer)
    with core.db.session() as s:
        assert companies.get_company(s, ids["acme"]).name == "Acme"
        config = {c.key: c.value for c in runtemplates.get_runtemplate(s, ids["rt"]).config}
        assert config["SCRIPT"] == "echo hi"
