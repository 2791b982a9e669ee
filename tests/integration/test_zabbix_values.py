"""What a job's end is reported to Zabbix as: which server, which host, which key, which
JSON — the company's own settings before the global ones, as in the original."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from multiflexid.core import Core
from multiflexid.services import jobs
from multiflexid.store.orm import RunTemplate
from multiflexid.zabbix import app_code, item_key, job_value, parse_server
from tests.support.factory import make_template, run_to_end, shell_app


def _ended(core: Core, rt_id: int) -> int:
    now = datetime.now(UTC)
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        job = jobs.create_job(s, core.transitions, rt, schedule_type="adhoc",
                              launched_by="alice", after=now, box=core.box,
                              overrides={"TOKEN": "one-off-secret"}, secret=["TOKEN"])
    with core.db.session() as s:
        core.transitions.claim(s, now, "n1", 10)
        run_to_end(core, s, job.id, now, exitcode=0)
    return job.id


def test_the_value_of_a_jobs_end(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    rt = make_template(core, app_doc=shell_app("Bank statements, daily"), name="import")
    job = _ended(core, rt)
    settings = core.settings
    with core.db.read_session() as s:  # no server anywhere: nothing to send
        assert job_value(s, job, settings) is None
    settings = replace(settings, zabbix_server="zabbix.example", zabbix_host="")
    with core.db.read_session() as s:
        value = job_value(s, job, settings)
    assert value is not None
    assert (value.server, value.host, value.key) == (
        "zabbix.example:10051", "test-node", f"job-[acme-Bank_statements_daily-{rt}]")
    sent = json.loads(value.value)
    assert (sent["phase"], sent["job_id"], sent["state"], sent["exitcode"]) == \
        ("jobDone", job, "succeeded", 0)
    assert (sent["company_code"], sent["company_name"], sent["app_name"]) == \
        ("acme", "Acme", "Bank statements, daily")
    assert sent["launched_by"] == "alice" and sent["interval_seconds"] == 0
    assert "one-off-secret" not in value.value and "tok-SECRET" not in value.value
    # The company's own host and server win, as the original's company zabbix_host does.
    r = mfcli("company", "update", "--slug", "acme", "--zabbix-host", "Acme ERP",
              "--zabbix-server", "[::1]:10052", "--format", "json")
    assert r.code == 0, r.err
    assert (r.json["zabbix_host"], r.json["zabbix_server"]) == ("Acme ERP", "[::1]:10052")
    with core.db.read_session() as s:
        value = job_value(s, job, settings)
    assert value is not None and (value.server, value.host) == ("[::1]:10052", "Acme ERP")
    assert parse_server(value.server) == ("::1", 10052)


def test_bad_zabbix_settings_of_a_company_name_the_field(core: Core, mfcli) -> None:  # type: ignore[no-untyped-def]
    make_template(core)
    bad = mfcli("company", "update", "--slug", "acme", "--zabbix-server", "host:99999")
    assert bad.code == 1 and "zabbix_server: 'host:99999' is not host[:port]" in bad.err
    bad = mfcli("company", "update", "--slug", "acme", "--zabbix-host", "a,b")
    assert bad.code == 1 and "zabbix_host: 'a,b' is not a Zabbix host name" in bad.err
    cleared = mfcli("company", "update", "--slug", "acme", "--zabbix-host", "",
                    "--format", "json")
    assert cleared.json["zabbix_host"] is None


def test_keys_hold_no_characters_zabbix_refuses() -> None:
    assert app_code("Bank statements, daily [CZ]") == "Bank_statements_daily_CZ"
    assert item_key("acme", "A]B,C", 7) == "job-[acme-A_B_C-7]"
    assert parse_server("zbx") == ("zbx", 10051)
    assert parse_server("zbx:20051") == ("zbx", 20051)
    assert parse_server("[fe80::1]:1") == ("fe80::1", 1)
