"""Retries on a real database: every backoff kind, the retry chain, retry: false."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from multiflexid.core import Core
from multiflexid.store.orm import Job, RunTemplate, Schedule
from tests.support.factory import make_template, run_to_end, shell_app

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _app_with_codes() -> dict:
    doc = shell_app("Coded")
    doc["exitCodes"] = {
        "0": {"description": "ok", "severity": "success", "retry": False},
        "2": {"description": "transient", "severity": "error", "retry": True},
        "3": {"description": "bad input", "severity": "error", "retry": False},
        "4": {"description": "nothing to do", "severity": "info", "retry": False},
    }
    return doc


def _first_job(core: Core, rt_id: int) -> int:
    with core.db.session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None
        from multiflexid.services.jobs import create_job

        job = create_job(s, core.transitions, rt, schedule_type="adhoc", launched_by="alice",
                         after=T0,
                         box=core.box, overrides={"TOKEN": "one-off-secret"})
        return job.id


def _fail(core: Core, job_id: int, now: datetime, code: int | None = 2,
          state: str = "failed") -> Job:
    with core.db.session() as s:
        assert core.transitions.claim(s, now, "n1", 10) == [job_id]
    with core.db.session() as s:
        run_to_end(core, s, job_id, now, exitcode=code,
                   outcome="exited" if state in ("failed", "succeeded") else state)
    with core.db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _retry_of(core: Core, job_id: int) -> tuple[Job, datetime] | None:
    with core.db.read_session() as s:
        job = s.scalar(select(Job).where(Job.retry_of_id == job_id))
        if job is None:
            return None
        after = s.scalar(select(Schedule.after).where(Schedule.job_id == job.id))
        assert after is not None
        return job, after


@pytest.mark.parametrize(("backoff", "gaps"), [
    ("none", [10, 10, 10]),
    ("fixed", [10, 10, 10]),
    ("linear", [10, 20, 30]),
    ("exponential", [20, 40, 80]),
])
def test_each_backoff_kind_spaces_the_attempts(core: Core, backoff: str, gaps: list[int]) -> None:
    rt_id = make_template(core, app_doc=_app_with_codes(), max_attempts=4,
                          retry_backoff=backoff, retry_min_gap=10)
    job_id, now = _first_job(core, rt_id), T0
    for attempt, gap in enumerate(gaps, start=1):
        failed = _fail(core, job_id, now)
        assert failed.attempt == attempt
        found = _retry_of(core, job_id)
        assert found is not None, f"no retry after attempt {attempt}"
        retry, after = found
        assert retry.schedule_type == "retry"
        assert retry.attempt == attempt + 1
        assert retry.launched_by == "alice"
        assert retry.overrides == {"TOKEN": retry.overrides["TOKEN"]}  # still encrypted
        assert "one-off-secret" not in str(retry.overrides)
        assert after == now + timedelta(seconds=gap)
        assert f"retry {attempt + 1}/4 queued as job {retry.id} in {gap} s" in failed.reason
        job_id, now = retry.id, after
    _fail(core, job_id, now)  # the 4th attempt fails too: max_attempts reached
    assert _retry_of(core, job_id) is None


def test_exit_code_declared_retry_false_is_never_retried(core: Core) -> None:
    rt_id = make_template(core, app_doc=_app_with_codes(), max_attempts=5, retry_min_gap=0)
    job = _fail(core, _first_job(core, rt_id), T0, code=3)
    assert job.state == "failed"
    assert _retry_of(core, job.id) is None


def test_undeclared_code_and_timeouts_are_retried(core: Core) -> None:
    rt_id = make_template(core, app_doc=_app_with_codes(), max_attempts=3, retry_min_gap=0)
    job = _fail(core, _first_job(core, rt_id), T0, code=17)
    found = _retry_of(core, job.id)
    assert found is not None
    timed_out = _fail(core, found[0].id, T0, code=None, state="timed_out")
    assert _retry_of(core, timed_out.id) is not None


def test_cancelled_jobs_and_single_attempt_templates_are_not_retried(core: Core) -> None:
    once = make_template(core, app_doc=_app_with_codes(), name="once")  # max_attempts 1
    assert _retry_of(core, _fail(core, _first_job(core, once), T0).id) is None
    many = make_template(core, app_doc=_app_with_codes(), name="many", max_attempts=5)
    job = _fail(core, _first_job(core, many), T0, code=None, state="cancelled")
    assert _retry_of(core, job.id) is None


def test_declared_success_and_info_codes_count_as_success(core: Core) -> None:
    rt_id = make_template(core, app_doc=_app_with_codes(), max_attempts=3)
    job = _fail(core, _first_job(core, rt_id), T0, code=4)
    assert job.state == "succeeded"
    assert _retry_of(core, job.id) is None
    with core.db.read_session() as s:
        rt = s.get(RunTemplate, rt_id)
        assert rt is not None and rt.successful_jobs_count == 1
