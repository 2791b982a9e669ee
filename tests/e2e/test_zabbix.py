"""Zabbix, compatible with the original MultiFlexi's integration, against Debian's Zabbix:

- the agent side: a real zabbix_agentd with the packaged items (zabbix/multiflexi.conf),
  queried with zabbix_utils' Getter: discovery JSON and a template's item values;
- the template (zabbix/multiflexi_template.yaml) imported into a real Zabbix server
  through its frontend's API, linked to a host whose run templates the server discovers
  through that agent;
- the sender side: the real daemon pushes each job's end to the real server (trapper
  item job-[company-app-id]), also after the server was down for a while (retried), and
  the value lands in the server's history with the job's own end time.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from zabbix_utils import Getter

from multiflexi.settings import load_settings
from multiflexid.core import Core
from tests.conftest import Env
from tests.support.daemon import running_daemon
from tests.support.factory import make_template, overdue_template, run_to_end, shell_app
from tests.support.pgcluster import PgCluster
from tests.support.zabbix import (
    TEMPLATE,
    ZabbixAgent,
    ZabbixFrontend,
    ZabbixServer,
    create_zabbix_database,
    remove,
    wait,
)

# Zabbix's programs run as root here (the agent: see ZabbixAgent; the frontend needs a
# mount namespace of its own).
pytestmark = [pytest.mark.root_only, pytest.mark.usefixtures("require_root")]

TEMPLATE_NAME = "MultiFlexi by Zabbix agent"


def agent_env(env: Env) -> dict[str, str]:
    """The agent's environment: this checkout's multiflexi-cli first on PATH, and the
    settings of the test's installation (as /etc/multiflexi/multiflexi.conf would be)."""
    bin_dir = str(Path(sys.executable).parent)
    return {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
            **env.vars()}


def _finished(core: Core, rt_id: int, exitcode: int) -> int:
    from multiflexid.services import jobs
    from multiflexid.store.orm import RunTemplate

    now = datetime.now(UTC)
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        job = jobs.create_job(s, core.transitions, rt, schedule_type="adhoc",
                              launched_by="alice", after=now, box=core.box)
    with core.db.session() as s:
        assert core.transitions.claim(s, now, "n1", 10) == [job.id]
    with core.db.session() as s:
        run_to_end(core, s, job.id, now, exitcode=exitcode)
    return job.id


def test_agent_items_answer_through_the_packaged_config(
        core: Core, mf_env: Env, tmp_path: Path) -> None:
    failing = make_template(core, name="import", interv="n")
    fine = make_template(core, app_doc=shell_app("Bank statements"), name="statements",
                         interv="d", timezone="UTC")
    late = overdue_template(core, name="bank import")
    _finished(core, failing, 3)
    _finished(core, fine, 0)
    other = make_template(core, company="globex", name="other", interv="n")
    agent = ZabbixAgent(tmp_path, agent_env(mf_env)).start()
    try:
        companies = json.loads(agent.get("multiflexi.company.lld"))
        assert [(c["{#COMPANY_CODE}"], c["{#COMPANY_NAME}"]) for c in companies] == [
            ("acme", "Acme"), ("globex", "Globex")]
        templates = {t["{#RUNTEMPLATE}"]: t for t in
                     json.loads(agent.get("multiflexi.runtemplate.lld"))}
        assert set(templates) == {str(failing), str(fine), str(late), str(other)}
        assert templates[str(fine)]["{#APPNAME}"] == "Bank statements"
        assert templates[str(fine)]["{#APPNAME_CODE}"] == "Bank_statements"
        assert templates[str(late)]["{#DEADLINE}"] == "+30m"
        assert templates[str(failing)]["{#INTERVAL}"] == "n"

        status = json.loads(agent.get(f"multiflexi.runtemplate.status[{failing}]"))
        assert (status["last_state"], status["last_status"], status["last_exitcode"]) == \
            ("failed", 1, 3)
        assert agent.get(f"multiflexi.runtemplate.last_state[{failing}]") == "failed"
        assert agent.get(f"multiflexi.runtemplate.last_exitcode[{failing}]") == "3"
        assert agent.get(f"multiflexi.runtemplate.last_success[{failing}]") == "0"
        success = int(agent.get(f"multiflexi.runtemplate.last_success[{fine}]"))
        assert abs(success - datetime.now(UTC).timestamp()) < 300
        assert agent.get(f"multiflexi.runtemplate.missed[{late}]") == "1"
        assert agent.get(f"multiflexi.runtemplate.late[{late}]") == "0"
        assert agent.get(f"multiflexi.runtemplate.missed[{fine}]") == "0"

        check = json.loads(agent.get("multiflexi.company.check[acme]"))
        assert (check["status"], check["code"]) == ("CRITICAL", 2)
        assert "missed the deadline (bank import)" in check["summary"]
        assert json.loads(agent.get("multiflexi.company.check[globex]"))["code"] == 0
        assert json.loads(agent.get("multiflexi.appstatus"))["database"]["up_to_date"]
        bad = Getter("127.0.0.1", agent.port, timeout=40).get(
            "multiflexi.runtemplate.status[999]")
        assert bad.value is not None and "no run template" in bad.value.lower()
    finally:
        agent.stop()


# --- the server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zabbix(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ZabbixServer, ZabbixFrontend]]:
    """A Zabbix server and its frontend's API on a Zabbix database of the test cluster."""
    workdir = tmp_path_factory.mktemp("zabbix")
    database = create_zabbix_database(pg_cluster, "zabbix_test")
    server = ZabbixServer(workdir, pg_cluster, database).start()
    frontend = ZabbixFrontend(workdir, pg_cluster, database, server)
    try:
        frontend.start()
        yield server, frontend
    finally:
        frontend.stop()
        server.stop()


def _sqlite_install(base: Path) -> Env:
    data = base / "data"
    data.mkdir(parents=True)
    return Env(data, f"sqlite:///{data / 'multiflexi.db'}", base / "mf.sock")


def _history(api: Any, itemid: str) -> list[dict[str, Any]]:
    return list(api.history.get(history=4, itemids=[itemid], output="extend",
                                sortfield="clock", sortorder="ASC"))


def test_template_discovery_and_job_ends_on_a_real_zabbix_server(
        zabbix: tuple[ZabbixServer, ZabbixFrontend], monkeypatch: pytest.MonkeyPatch,
        figures) -> None:  # type: ignore[no-untyped-def]
    server, frontend = zabbix
    base = Path(tempfile.mkdtemp(prefix="mfz-"))  # a socket path must stay short
    env = _sandbox(base, monkeypatch)
    core = Core(load_settings())
    try:
        rt = make_template(core, name="bank import", interv="n")
        api = frontend.login()
        # The template as shipped imports (the server checks every item, trigger, map).
        assert api.configuration.import_(format="yaml", source=TEMPLATE.read_text(), rules={
            key: {"createMissing": True, "updateExisting": True} for key in (
                "templates", "items", "discoveryRules", "triggers", "valueMaps")
        } | {"groups": {"createMissing": True}, "templateLinkage": {"createMissing": True}})
        [template] = api.template.get(output=["templateid"], filter={"host": TEMPLATE_NAME})
        assert len(api.triggerprototype.get(templateids=template["templateid"],
                                            output=["description"])) == 4
        agent = ZabbixAgent(base, agent_env(env)).start()
        [group] = api.hostgroup.get(output=["groupid"], filter={"name": "Linux servers"})
        host = api.host.create(host="test-node", groups=[{"groupid": group["groupid"]}],
                               templates=[{"templateid": template["templateid"]}],
                               interfaces=[{"type": 1, "main": 1, "useip": 1,
                                            "ip": "127.0.0.1", "dns": "",
                                            "port": str(agent.port)}])["hostids"][0]
        [rule] = api.discoveryrule.get(hostids=[host], output=["itemid"],
                                       filter={"key_": "multiflexi.runtemplate.lld"})
        key = f"job-[acme-Shell-{rt}]"
        [item] = wait(_discovered(api, host, rule["itemid"], key),
                      f"the discovered trapper item {key}", 120,
                      lambda: agent.log() + server.log())
        _until_the_server_takes(server, key)
        extra = {"MULTIFLEXI_ZABBIX_SERVER": f"127.0.0.1:{server.port}"}
        with running_daemon(env.vars(), base, extra_env=extra) as daemon:
            first = daemon.wait_job(daemon.call("runtemplate.run", id=rt)["id"])
            values = wait(lambda: [v for v in _history(api, item["itemid"])
                                   if json.loads(v["value"]).get("phase") == "jobDone"],
                          "the job's end in the server's history", 60, daemon.log)
            sent = json.loads(values[0]["value"])
            assert (sent["job_id"], sent["state"], sent["exitcode"]) == \
                (first["id"], "succeeded", 0)
            assert (sent["company_code"], sent["app_code"], sent["runtemplate_id"]) == \
                ("acme", "Shell", rt)
            assert sent["runtemplate_name"] == "bank import" and sent["duration"] >= 0
            assert "TOKEN" not in values[0]["value"] and "tok-SECRET" not in values[0]["value"]
            # The server goes away; a job ends meanwhile; its end arrives when it is back.
            server.stop()
            second = daemon.wait_job(daemon.call("runtemplate.run", id=rt,
                                                 env={"SCRIPT": "exit 3"})["id"])
            wait(lambda: "zabbix: cannot send to" in daemon.log(), "the failed send", 30,
                 daemon.log)
            server.start()
            later = wait(lambda: [v for v in _history(api, item["itemid"])
                                  if json.loads(v["value"]).get("job_id") == second["id"]],
                         "the retried value", 120, lambda: daemon.log() + server.log())
            assert json.loads(later[0]["value"])["exitcode"] == 3
            ended = datetime.fromisoformat(second["end"].replace("Z", "+00:00"))
            assert int(later[0]["clock"]) == int(ended.timestamp())  # its own time
            assert "zabbix: sending again" in daemon.log()
            # A template Zabbix does not know yet (not discovered): said once, not retried.
            other = make_template(core, name="not discovered", interv="n")
            daemon.wait_job(daemon.call("runtemplate.run", id=other)["id"])
            wait(lambda: f"job-[acme-Shell-{other}]" in daemon.log(), "the refusal", 30,
                 daemon.log)
        figures(f"zabbix: {len(_history(api, item['itemid']))} values of {key} in history")
    finally:
        core.close()
        if "agent" in locals():
            agent.stop()
        remove(base)


def _sandbox(base: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    env = _sqlite_install(base)
    for name, value in env.vars().items():
        monkeypatch.setenv(name, value)
    return env


def _discovered(api: Any, host: str, rule: str, key: str) -> Callable[[], Any]:
    """A check for the discovered item that asks the server to run the discovery rule now
    ("check now", a task) every 5 s until the item is there: a task that reaches the
    server before its configuration cache holds the new host is dropped, and the rule's
    own interval is an hour."""
    asked = [0.0]

    def check() -> Any:
        if time.monotonic() - asked[0] >= 5:
            asked[0] = time.monotonic()
            api.task.create(type=6, request={"itemid": rule})  # "check now"
        return api.item.get(hostids=[host], output=["itemid", "key_"], filter={"key_": key})

    return check


def _until_the_server_takes(server: ZabbixServer, key: str) -> None:
    """The server reads new items from its database every second: send a probe value (with
    the official sender) until it is taken, so the daemon's first value is not refused."""
    from zabbix_utils import Sender

    probe = json.dumps({"phase": "probe"})
    wait(lambda: Sender("127.0.0.1", server.port, timeout=5).send_value(
        "test-node", key, probe).processed == 1, "the server to know the item", 60,
        server.log)

