"""Actions on a tick's missed or late deadline (``--on missed``, ``--on late``), on SQLite
and PostgreSQL: the deadline tracker is driven with simulated time (tests/support/ticks.py)
and the daemon's real action worker delivers to real servers the test starts (a local
HTTP server, an SMTP server, a command)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from multiflexid.core import Core
from multiflexid.presenters import iso
from multiflexid.store.orm import ActionRun, RunTemplateTick
from tests.support.actions import deliver
from tests.support.servers import HttpRecorder, Reply, smtp_server
from tests.support.ticks import DAY, Clock, at, daily


def _runs(core: Core) -> list[tuple[int | None, int | None, str, str]]:
    """(action, tick, trigger, state) of every run, oldest first."""
    with core.db.read_session() as s:
        return [(r.action_id, r.tick_id, r.trigger, r.state) for r in
                s.scalars(select(ActionRun).order_by(ActionRun.id))]


def _tick_id(core: Core, rt_id: int, hour: int, day: int = 0) -> int:
    with core.db.read_session() as s:
        found = s.scalar(select(RunTemplateTick.id).where(
            RunTemplateTick.runtemplate_id == rt_id,
            RunTemplateTick.tick == at(hour, 0, DAY + timedelta(days=day))))
        assert found is not None
        return found


def add(mfcli: Any, *args: str) -> int:
    r = mfcli(*args)
    assert r.code == 0, r.err
    return int(r.out.strip())


@pytest.fixture
def hook() -> Iterator[HttpRecorder]:
    with HttpRecorder([Reply(200)]) as server:
        yield server


def test_a_missed_tick_delivers_one_webhook(core: Core, mfcli: Any,
                                            hook: HttpRecorder) -> None:
    clock = Clock(core)
    rt = daily(core, at(4))
    action = add(mfcli, "runtemplate", "action", "add", "--id", str(rt), "--on", "missed",
                 "--module", "WebHook", "--set", f"uri={hook.url()}")
    [job] = clock.tick(at(5, 0))
    clock.claim(at(5, 0))  # it runs... and runs
    clock.sweep(at(6, 59))
    deliver(core)
    assert hook.received == []  # not missed yet
    clock.sweep(at(7, 0))
    deliver(core)
    clock.sweep(at(7, 30))  # later sweeps and a late success: no second message
    clock.finish(job, at(7, 40))
    clock.sweep(at(8, 0))
    deliver(core)
    (post,) = hook.received
    tick = _tick_id(core, rt, 5)
    assert post.headers["idempotency-key"] == f"tick-{tick}-{action}"
    p = post.json
    assert (p["event"], p["trigger"], p["sample"]) == ("tick.missed", "missed", False)
    assert p["tick"] == {"id": tick, "tick": iso(at(5)), "deadline": iso(at(7)),
                         "deadline_rule": "07:00", "outcome": "missed",
                         "missed_at": iso(at(7)), "settled_at": iso(at(7))}
    assert p["runtemplate"] == {"id": rt, "name": "bank import"}
    assert p["company"]["slug"] == "acme" and p["application"]["name"] == "Shell"
    # The last job: the one that ran past the deadline (delivered before it ended).
    assert (p["job"]["id"], p["job"]["state"]) == (job, "claimed")
    assert p["action"]["module"] == "WebHook"
    assert _runs(core) == [(action, tick, "missed", "succeeded")]
    listed = mfcli("action-run", "list").out
    assert f"tick {tick}" in listed and "missed" in listed


def test_first_is_the_first_miss_of_a_streak_every_is_each(core: Core, mfcli: Any) -> None:
    clock = Clock(core)
    rt = daily(core, at(4))
    base = ("runtemplate", "action", "add", "--id", str(rt), "--on", "missed", "--module",
            "WebHook")
    first = add(mfcli, *base, "--set", "uri=http://127.0.0.1:9/first")
    every = add(mfcli, *base, "--throttle", "every", "--set", "uri=http://127.0.0.1:9/all")

    def blocked_and_missed(day: int) -> None:
        [job] = clock.tick(at(5, 0, DAY + timedelta(days=day)))
        clock.claim(at(5, 0, DAY + timedelta(days=day)))
        with core.db.session() as s:
            core.transitions.block(s, job, at(5, 0, DAY + timedelta(days=day)), "no URL")
        clock.sweep(at(7, 0, DAY + timedelta(days=day)))

    for day in range(3):  # Monday to Wednesday: never done
        blocked_and_missed(day)
    [thursday] = clock.tick(at(5, 0, DAY + timedelta(days=3)))  # done in time: streak ends
    clock.claim(at(5, 0, DAY + timedelta(days=3)))
    clock.finish(thursday, at(5, 10, DAY + timedelta(days=3)))
    blocked_and_missed(4)  # Friday: missed again
    ticks = [_tick_id(core, rt, 5, day) for day in (0, 1, 2, 4)]
    runs = [(a, t) for a, t, _trigger, _state in _runs(core)]
    assert [t for a, t in runs if a == first] == [ticks[0], ticks[3]]
    assert [t for a, t in runs if a == every] == ticks


def test_missed_while_no_daemon_ran_fires_when_it_comes_back(core: Core, mfcli: Any,
                                                             hook: HttpRecorder) -> None:
    clock = Clock(core)
    rt = daily(core, at(4))
    add(mfcli, "runtemplate", "action", "add", "--id", str(rt), "--on", "missed",
        "--throttle", "every", "--module", "WebHook", "--set", f"uri={hook.url()}")
    back = at(9, 0, DAY + timedelta(days=2))  # down from Monday 04:00 until Wednesday 09:00
    [catch_up] = clock.tick(back)
    deliver(core)
    posts = sorted(hook.received, key=lambda p: p.json["tick"]["tick"])
    assert [p.json["tick"]["tick"] for p in posts] == [
        iso(at(5, 0, DAY + timedelta(days=d))) for d in range(3)]
    assert {p.json["tick"]["missed_at"] for p in posts} == {iso(back)}
    # The last job: the one the scheduler queued when it came back, not run yet.
    assert {(p.json["job"]["id"], p.json["job"]["state"], p.json["job"]["schedule_type"])
            for p in posts} == {(catch_up, "scheduled", "catch-up")}


def test_blocked_then_missed_says_why(core: Core, mfcli: Any, tmp_path: Path) -> None:
    """A job blocked by missing configuration: the tick is missed at the deadline, and
    the message (Notify's mail, a command's variables) says so."""
    clock = Clock(core)
    rt = daily(core, at(4))
    out = tmp_path / "env.json"
    script = (f"import json, os; json.dump({{k: v for k, v in os.environ.items() "
              f"if k.startswith('MULTIFLEXI_')}}, open('{out}', 'w'))")
    with smtp_server() as (port, mails):
        add(mfcli, "runtemplate", "action", "add", "--id", str(rt), "--on", "missed",
            "--module", "Notify", "--set",
            f"url=mailto://127.0.0.1:{port}?from=mf@example.com&to=a@example.com&secure=no")
        add(mfcli, "runtemplate", "action", "add", "--id", str(rt), "--on", "missed",
            "--module", "CustomCommand", "--set", f'command=python3 -c "{script}"')
        [job] = clock.tick(at(5, 0))
        clock.claim(at(5, 0))
        with core.db.session() as s:
            core.transitions.block(s, job, at(5, 0), "missing required ABRAFLEXI_URL")
        clock.sweep(at(7, 0))
        deliver(core)
    (mail,) = mails
    assert mail.message["Subject"] == ("[MultiFlexi] acme · bank import: deadline missed "
                                       f"(07:00, tick {iso(at(5))})")
    body = mail.message.get_body(("plain",)).get_content()
    assert f"Deadline:     {iso(at(7))} (07:00)" in body
    assert "Outcome:      missed: not done by its deadline" in body
    assert f"Job:          #{job} blocked" in body
    assert "Reason:       missing required ABRAFLEXI_URL" in body
    env = json.loads(out.read_text())
    tick = _tick_id(core, rt, 5)
    assert {k: env[k] for k in ("MULTIFLEXI_EVENT", "MULTIFLEXI_TRIGGER", "MULTIFLEXI_TICK_ID",
                                "MULTIFLEXI_TICK", "MULTIFLEXI_DEADLINE",
                                "MULTIFLEXI_TICK_OUTCOME", "MULTIFLEXI_JOB_ID",
                                "MULTIFLEXI_JOB_STATE", "MULTIFLEXI_RUNTEMPLATE_ID")} == {
        "MULTIFLEXI_EVENT": "tick.missed", "MULTIFLEXI_TRIGGER": "missed",
        "MULTIFLEXI_TICK_ID": str(tick), "MULTIFLEXI_TICK": iso(at(5)),
        "MULTIFLEXI_DEADLINE": iso(at(7)), "MULTIFLEXI_TICK_OUTCOME": "missed",
        "MULTIFLEXI_JOB_ID": str(job), "MULTIFLEXI_JOB_STATE": "blocked",
        "MULTIFLEXI_RUNTEMPLATE_ID": str(rt)}


def test_a_late_fulfilment_fires_late(core: Core, mfcli: Any, hook: HttpRecorder) -> None:
    clock = Clock(core)
    rt = daily(core, at(4))
    late = add(mfcli, "runtemplate", "action", "add", "--id", str(rt), "--on", "late",
               "--module", "WebHook", "--set", f"uri={hook.url('/late')}")
    r = mfcli("runtemplate", "action", "add", "--id", str(rt), "--on", "late", "--throttle",
              "first", "--module", "WebHook", "--set", f"uri={hook.url()}")
    assert r.code == 1 and "throttle: 'first' is for failure, recovery, missed" in r.err
    [monday] = clock.tick(at(5, 0))
    clock.claim(at(5, 0))
    clock.finish(monday, at(6, 30))  # in time: nothing
    tuesday = DAY + timedelta(days=1)
    [job] = clock.tick(at(5, 0, tuesday))
    clock.claim(at(5, 0, tuesday))
    clock.sweep(at(7, 0, tuesday))
    clock.finish(job, at(7, 40, tuesday), exitcode=0)
    deliver(core)
    (post,) = hook.received
    p = post.json
    assert (p["event"], p["trigger"], post.path) == ("tick.late", "late", "/late")
    assert (p["tick"]["outcome"], p["tick"]["settled_at"]) == ("fulfilled_late",
                                                               iso(at(7, 40, tuesday)))
    assert (p["job"]["id"], p["job"]["state"], p["job"]["end"]) == (
        job, "succeeded", iso(at(7, 40, tuesday)))
    assert _runs(core) == [(late, _tick_id(core, rt, 5, 1), "late", "succeeded")]


def test_a_company_default_on_missed(core: Core, mfcli: Any) -> None:
    clock = Clock(core)
    one = daily(core, at(4), name="one")
    other = daily(core, at(4), name="other")
    action = add(mfcli, "company", "action", "add", "--company", "acme", "--on", "missed",
                 "--module", "WebHook", "--set", "uri=http://127.0.0.1:9/all")
    listed = mfcli("company", "action", "list", "--company", "acme").out
    assert "missed" in listed and "first" in listed
    assert mfcli("runtemplate", "update", "--id", str(other), "--no-company-actions").code == 0
    clock.tick(at(5, 0))
    clock.sweep(at(7, 0))
    assert _runs(core) == [(action, _tick_id(core, one, 5), "missed", "pending")]
    # A job's end does not fire it.
    assert clock.claim(at(7, 1)) and all(r[2] == "missed" for r in _runs(core))


def test_action_test_sends_a_sample_tick(core: Core, mfcli: Any, hook: HttpRecorder) -> None:
    rt = daily(core, at(4))
    action = add(mfcli, "runtemplate", "action", "add", "--id", str(rt), "--on", "missed",
                 "--module", "WebHook", "--set", f"uri={hook.url()}")
    r = mfcli("runtemplate", "action", "test", "--id", str(rt), "--action", str(action))
    assert r.code == 0, r.err
    (post,) = hook.received
    p = post.json
    assert (p["event"], p["sample"], p["tick"]["outcome"], p["tick"]["deadline_rule"]) == (
        "tick.missed", True, "missed", "07:00")
