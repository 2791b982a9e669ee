"""The socket methods for many companies (runtemplate.clone, credential.clone,
runtemplate.bulk, company.env.list|set|unset, tags and notes of runtemplate.create|update|
list) through the daemon's real socket and handlers, on SQLite and PostgreSQL: results
read back, refusals naming the parameter in ``data.field``, the audit trail, and the
roles (a viewer and an operator as user nobody, which needs root)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from multiflexi import examples
from multiflexi.errors import Conflict, InvalidInput, MultiFlexiError, NotFound
from multiflexid.core import Core
from multiflexid.domain.credjson import parse_credential_type
from multiflexid.services import access, companies, company_env, credentials, runtemplates
from multiflexid.store.types import utcnow
from tests.conftest import Env
from tests.support.factory import make_template, shell_app
from tests.support.inproc import daemon_in_process
from tests.support.nobody import calls_as_nobody, public_socket

SECRET = "Sock-Secret-8086"


@pytest.fixture
def env(mf_env: Env) -> Iterator[Env]:
    with public_socket(mf_env) as public:
        yield public


def _site(core: Core) -> dict[str, int]:
    """acme: two shell templates tagged nightly and a Probe credential; globex: one
    template tagged nightly of an app whose LIMIT is an integer, a Probe credential;
    umbrella: nothing."""
    ids = {"rt1": make_template(core, company="acme", name="one", tags=["nightly"],
                                config={"SCRIPT": "echo one"}),
           "rt2": make_template(core, company="acme", name="two", tags=["nightly", "bank"],
                                config={"SCRIPT": "echo two"})}
    counter = shell_app("Counter", "echo counted")
    counter["environment"]["LIMIT"] = {"type": "integer", "description": "how many"}
    ids["rt3"] = make_template(core, app_doc=counter, company="globex", name="count",
                               tags=["nightly"])
    with core.db.session() as s:
        for path in examples.credential_type_files():
            credentials.upsert_credential_type(
                s, parse_credential_type(path.read_text(), str(path)))
        probe = credentials.get_credential_type(s, "Probe")
        for slug in ("acme", "globex", "umbrella"):
            company = (companies.create_company(s, name=slug.title(), slug=slug)
                       if slug == "umbrella" else companies.get_company(s, slug))
            ids[slug] = company.id
            if slug != "umbrella":
                ids[f"cred_{slug}"] = credentials.create_credential(
                    s, company, probe, "main", {"PASSWORD": f"{SECRET}-{slug}"}, core.box).id
    return ids


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def refused(call: Any, kind: type[MultiFlexiError] = InvalidInput) -> MultiFlexiError:
    with pytest.raises(kind) as info:
        await call
    return info.value


def test_clones(env: Env, core: Core) -> None:
    ids = _site(core)

    async def scenario() -> None:
        async with daemon_in_process(env) as d:
            await d.call("runtemplate.update", id=ids["rt1"], credentials=[ids["cred_acme"]])
            made = await d.call("runtemplate.clone", id=ids["rt1"], company="globex")
            assert (made["company"], made["name"], made["active"], made["credentials"],
                    made["tags"]) == ("globex", "one", False, [ids["cred_globex"]],
                                      ["nightly"])
            bad = await refused(d.call("runtemplate.clone", id=ids["rt1"],
                                       company=ids["umbrella"]), Conflict)
            assert bad.data["field"] == "params.company"
            assert "umbrella has no credential of type Probe" in bad.message
            cred = await d.call("credential.clone", id=ids["cred_acme"], company="umbrella")
            assert (cred["company"], cred["name"], cred["values"]["PASSWORD"]) == (
                "umbrella", "main", "********")
            taken = await refused(d.call("credential.clone", id=ids["cred_acme"],
                                         company=ids["umbrella"]), Conflict)
            assert taken.data["field"] == "params.name"
            # now umbrella has its counterpart
            other = await d.call("runtemplate.clone", id=ids["rt1"], company=ids["umbrella"],
                                 name="for umbrella")
            assert (other["name"], other["credentials"]) == ("for umbrella", [cred["id"]])
            env_of = await d.call("runtemplate.env", id=other["id"])
            assert {e["key"]: e["source"] for e in env_of["environment"]}["PASSWORD"] == (
                f"credential #{cred['id']} 'main' (Probe)")
            trail = await d.call("audit.list", company_id=ids["globex"])
            entry = next(e for e in trail["items"] if e["entity_id"] == made["id"])
            assert (entry["action"], entry["via"]) == ("cloned", "socket")
            assert SECRET not in json.dumps(trail)
            missing = await refused(d.call("runtemplate.clone", id=ids["rt1"],
                                           company="nowhere"), NotFound)
            assert "nowhere" in missing.message and missing.data["field"] == "params.company"

    run(scenario())


def test_bulk(env: Env, core: Core) -> None:
    ids = _site(core)

    async def scenario() -> None:
        async with daemon_in_process(env) as d:
            async def script(rt: int) -> str:
                got = await d.call("runtemplate.env", id=rt)
                return str({e["key"]: e["value"] for e in got["environment"]}["SCRIPT"])

            dry = await d.call("runtemplate.bulk", op="set-config",
                               selection={"tag": "nightly", "company": "acme"},
                               values={"config": {"SCRIPT": "echo bulk",
                                                  "API_TOKEN": "t-1"}},
                               dry_run=True)
            assert dry == {"applied": False, "changes": [
                {"id": rt, "name": name, "company": "acme", "diff": [
                    {"field": "config.SCRIPT", "old": f"echo {name}", "new": "echo bulk"},
                    {"field": "config.API_TOKEN", "old": None, "new": "(secret changed)"}]}
                for rt, name in ((ids["rt1"], "one"), (ids["rt2"], "two"))]}
            assert [await script(rt) for rt in (ids["rt1"], ids["rt2"])] == ["echo one",
                                                                             "echo two"]
            # the last template of the selection cannot take the value: none changes
            bad = await refused(d.call("runtemplate.bulk", op="set-config",
                                       selection={"tag": "nightly"},
                                       values={"config": {"SCRIPT": "echo bulk",
                                                          "LIMIT": "lots"}}, dry_run=False))
            assert bad.data["field"] == "params.values.config.LIMIT"
            assert bad.data["runtemplate_id"] == ids["rt3"]
            assert bad.message == (f"run template {ids['rt3']} 'count' (globex): config.LIMIT: "
                                   "'lots' is not an integer; nothing was changed")
            assert [await script(rt) for rt in (ids["rt1"], ids["rt2"], ids["rt3"])] == [
                "echo one", "echo two", "echo counted"]
            foreign = await refused(d.call("runtemplate.bulk", op="assign-credential",
                                           selection={"ids": [ids["rt1"], ids["rt3"]]},
                                           values={"credential": ids["cred_acme"]},
                                           dry_run=False))
            assert foreign.data["field"] == "params.values.credential"
            assert (await d.call("runtemplate.get", id=ids["rt1"]))["credentials"] == []
            done = await d.call("runtemplate.bulk", op="set-config",
                                selection={"tag": "nightly"},
                                values={"config": {"SCRIPT": "echo bulk", "LIMIT": "3"}},
                                dry_run=False)
            assert done["applied"] and all(c["diff"] for c in done["changes"])
            assert [await script(rt) for rt in (ids["rt1"], ids["rt2"], ids["rt3"])] == [
                "echo bulk"] * 3
            # run: the jobs start at once
            ran = await d.call("runtemplate.bulk", op="run", selection={"tag": "bank"},
                               dry_run=False, via="tui")
            assert len(ran["jobs"]) == 1
            job = await d.wait_state(ran["jobs"][0], "succeeded")
            assert (job["runtemplate_id"], job["schedule_type"]) == (ids["rt2"], "adhoc-tui")
            await d.call("events.subscribe", runtemplates=True)
            off = await d.call("runtemplate.bulk", op="disable",
                               selection={"app": (await d.call("runtemplate.get",
                                                               id=ids["rt3"]))["app_id"]},
                               dry_run=False)
            assert off["changes"][0]["diff"] == [{"field": "active", "old": True, "new": False}]
            assert (await d.call("runtemplate.get", id=ids["rt3"]))["active"] is False
            async with asyncio.timeout(10):  # subscribers hear of it
                while True:
                    method, params = await d.events.get()
                    pushed = params.get("runtemplate") or {}
                    if method == "runtemplate.changed" and pushed.get("id") == ids["rt3"]:
                        break
            assert (pushed["active"], pushed["tags"]) == (False, ["nightly"])
            trail = await d.call("audit.list", runtemplate_id=ids["rt3"])
            assert [e["action"] for e in trail["items"][:2]] == ["bulk disable",
                                                                 "bulk set-config"]
            assert "t-1" not in json.dumps(await d.call("audit.list"))
            # what a bad request is told
            none = await refused(d.call("runtemplate.bulk", op="enable",
                                        selection={"tag": "nobody"}, dry_run=True))
            assert none.data["field"] == "params.selection"
            empty = await refused(d.call("runtemplate.bulk", op="enable", selection={},
                                         dry_run=True))
            assert empty.data["field"] == "params.selection"
            for params, field in (
                    ({"op": "explode", "selection": {"tag": "bank"}, "dry_run": True},
                     "params.op"),
                    ({"op": "enable", "selection": {"tag": "bank"}}, "params.dry_run"),
                    ({"op": "enable", "selection": {"tags": "bank"}, "dry_run": True},
                     "params.selection"),
                    ({"op": "enable", "selection": {"ids": [999]}, "dry_run": True},
                     "params.selection.ids"),
                    ({"op": "set-schedule", "selection": {"tag": "bank"}, "dry_run": True,
                      "values": {"interv": "c"}}, "params.values.cron")):
                err = await refused(d.client.call_with("runtemplate.bulk", params),
                                    MultiFlexiError)
                assert err.data["field"] == field, (params, err.message)

    run(scenario())


def test_company_environment(env: Env, core: Core) -> None:
    ids = _site(core)

    async def scenario() -> None:
        async with daemon_in_process(env) as d:
            listed = await d.call("company.env.set", company=ids["acme"], key="ERP_URL",
                                  value="https://erp.acme", secret=False)
            assert listed == [{"key": "ERP_URL", "value": "https://erp.acme",
                               "secret": False}]
            await d.call("company.env.set", company="acme", key="API_TOKEN", value="tk-9")
            await d.call("company.env.set", company="acme", key="PIN", value="1357",
                         secret=True)
            assert await d.call("company.env.list", company="acme") == [
                {"key": "API_TOKEN", "value": "********", "secret": True},
                {"key": "ERP_URL", "value": "https://erp.acme", "secret": False},
                {"key": "PIN", "value": "********", "secret": True}]
            revealed = await d.call("company.env.list", company="acme", reveal=True)
            assert [r["value"] for r in revealed] == ["tk-9", "https://erp.acme", "1357"]
            explained = {e["key"]: e for e in (await d.call(
                "runtemplate.env", id=ids["rt1"]))["environment"]}
            assert (explained["ERP_URL"]["source"], explained["PIN"]["value"]) == (
                "company environment", "********")
            assert "ERP_URL" not in {e["key"] for e in (await d.call(
                "runtemplate.env", id=ids["rt3"]))["environment"]}  # globex's
            job = await d.call("runtemplate.run", id=ids["rt1"])
            got = await d.wait_state(job["id"], "succeeded")
            given = d.fake.runs[job["id"]].spec.env
            assert (given["ERP_URL"], given["PIN"], given["API_TOKEN"]) == (
                "https://erp.acme", "1357", "tk-9")
            assert got["environment"]["PIN"] == "********"
            # a change reaches the next job (the launch cache keys on the company)
            await d.call("company.env.set", company="acme", key="ERP_URL", value="https://b")
            job = await d.call("runtemplate.run", id=ids["rt1"])
            await d.wait_state(job["id"], "succeeded")
            assert d.fake.runs[job["id"]].spec.env["ERP_URL"] == "https://b"
            after = await d.call("company.env.unset", company="acme", key="ERP_URL")
            assert [r["key"] for r in after] == ["API_TOKEN", "PIN"]
            gone = await refused(d.call("company.env.unset", company="acme", key="ERP_URL"),
                                 NotFound)
            assert gone.data["field"] == "params.key"
            bad = await refused(d.call("company.env.set", company="acme", key="1X",
                                       value="y"))
            assert bad.data["field"] == "params.key"
            nowhere = await refused(d.call("company.env.list", company="nowhere"), NotFound)
            assert nowhere.data["field"] == "params.company"
            trail = await d.call("audit.list", company_id=ids["acme"])
            assert any(e["diff"].get("environment.PIN") == "set" for e in trail["items"])
            assert "1357" not in json.dumps(trail) and "tk-9" not in json.dumps(trail)

    run(scenario())


def test_tags_and_notes(env: Env, core: Core) -> None:
    ids = _site(core)

    async def scenario() -> None:
        async with daemon_in_process(env) as d:
            rt = await d.call("runtemplate.get", id=ids["rt2"])
            assert (rt["tags"], rt["note"]) == (["bank", "nightly"], None)
            made = await d.call("runtemplate.create", app_id=rt["app_id"],
                                company_id=ids["acme"], name="new", tags=["Bank"],
                                note="from the TUI")
            assert (made["tags"], made["note"]) == (["bank"], "from the TUI")
            listed = await d.call("runtemplate.list", tag="bank")
            assert [r["id"] for r in listed["items"]] == [ids["rt2"], made["id"]]
            assert listed["items"][0]["tags"] == ["bank", "nightly"] and listed["total"] == 2
            changed = await d.call("runtemplate.update", id=ids["rt2"], tags=["weekly"],
                                   note="moved to weekly")
            assert (changed["tags"], changed["note"]) == (["weekly"], "moved to weekly")
            cleared = await d.call("runtemplate.update", id=ids["rt2"], tags=[], note="")
            assert (cleared["tags"], cleared["note"]) == ([], None)
            bad = await refused(d.call("runtemplate.update", id=ids["rt2"], tags=["a b"]))
            assert bad.data["field"] == "params.tags"
            bad = await refused(d.call("runtemplate.list", tag="a b"))
            assert bad.data["field"] == "params.tag"
            long = await refused(d.call("runtemplate.update", id=ids["rt2"], note="x" * 4001))
            assert long.data["field"] == "params.note"

    run(scenario())


def _must_be_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root (switches to uid 65534); make test leaves it out otherwise")


@pytest.mark.root_only
def test_a_viewer_is_refused(env: Env, core: Core) -> None:
    _must_be_root()
    ids = _site(core)
    with core.db.session() as s:
        access.grant(s, "nogroup", "viewer", None, utcnow(), "test")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("company.env.list", {"company": ids["acme"]}),  # seeing is allowed
        ("company.env.list", {"company": ids["acme"], "reveal": True}),
        ("company.env.set", {"company": ids["acme"], "key": "X", "value": "y"}),
        ("company.env.unset", {"company": ids["acme"], "key": "X"}),
        ("runtemplate.clone", {"id": ids["rt1"]}),
        ("credential.clone", {"id": ids["cred_acme"]}),
        ("runtemplate.bulk", {"op": "set-config", "selection": {"tag": "nightly"},
                              "values": {"config": {"SCRIPT": "rm -rf /"}}, "dry_run": True}),
        ("runtemplate.bulk", {"op": "enable", "selection": {"tag": "nightly"},
                              "dry_run": False}),
        ("runtemplate.bulk", {"op": "run", "selection": {"tag": "nightly"},
                              "dry_run": False}),
    ]

    async def scenario() -> list[tuple[str, str]]:
        async with daemon_in_process(env) as d:
            await d.call("company.env.set", company="acme", key="X", value="kept")
            return await calls_as_nobody(env.socket, calls)

    got = run(scenario())
    assert got[0] == ("company.env.list", "ok")
    needs = ["admin", "admin", "admin", "admin", "admin", "admin", "operator", "operator"]
    for (method, answer), role in zip(got[1:], needs, strict=True):
        assert answer.startswith(f"forbidden: {method}"), (method, answer)
        assert f"needs role {role} on company acme; nobody has role viewer there" in answer
    with core.db.session() as s:
        assert company_env.env_view(company_env.env_rows(s, ids["acme"]), core.box) == [
            {"key": "X", "value": "kept", "secret": False}]
        config = {c.key: c.value for c in runtemplates.get_runtemplate(s, ids["rt1"]).config}
        assert config["SCRIPT"] == "echo one"
        assert len(runtemplates.list_runtemplates(s)) == 3


@pytest.mark.root_only
def test_an_operator_of_one_company(env: Env, core: Core) -> None:
    _must_be_root()
    ids = _site(core)
    with core.db.session() as s:
        access.grant(s, "nogroup", "operator", companies.get_company(s, "acme"), utcnow(),
                     "test")
    calls: list[tuple[str, dict[str, Any]]] = [
        # the selection holds only what nobody may see: acme's two templates
        ("runtemplate.bulk", {"op": "disable", "selection": {"tag": "nightly"},
                              "dry_run": False}),
        ("runtemplate.bulk", {"op": "set-config", "selection": {"tag": "nightly"},
                              "values": {"config": {"SCRIPT": "x"}}, "dry_run": True}),
        ("runtemplate.bulk", {"op": "enable", "selection": {"company": "globex"},
                              "dry_run": True}),
        ("runtemplate.clone", {"id": ids["rt1"], "company": "acme"}),
    ]

    async def scenario() -> list[tuple[str, str]]:
        async with daemon_in_process(env):
            return await calls_as_nobody(env.socket, calls)

    got = run(scenario())
    assert got[0] == ("runtemplate.bulk", "ok")
    assert got[1][1].startswith("forbidden: runtemplate.bulk needs role admin on company acme")
    assert got[2][1] == ("invalid_params: selection: no run template matches (company globex); "
                         "nothing was changed")
    assert got[3][1].startswith("forbidden: runtemplate.clone needs role admin")
    with core.db.session() as s:
        active = {rt.id: rt.active for rt in runtemplates.list_runtemplates(s)}
    assert active == {ids["rt1"]: False, ids["rt2"]: False, ids["rt3"]: True}
