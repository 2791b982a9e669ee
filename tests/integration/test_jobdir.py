"""Removing a job directory: what cannot be removed is said, not silently left behind."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from multiflexid.executors.jobdir import remove_job_dir

NOBODY = 65534


def test_a_job_dir_is_removed_whole(tmp_path: Path) -> None:
    job = tmp_path / "17"
    (job / "out" / "deep").mkdir(parents=True)
    (job / "out" / "deep" / "report.txt").write_text("x")
    assert remove_job_dir(job) is True
    assert not job.exists()


@pytest.mark.root_only
def test_what_the_daemon_cannot_remove_is_logged() -> None:
    # A container that ran as root wrote a directory into the job dir of a daemon that
    # runs as another user: that user cannot empty it. The daemon used to ignore this
    # silently (shutil.rmtree(..., True)) and the directory stayed for good.
    base = Path(tempfile.mkdtemp(prefix="mf-jobdir-"))
    try:
        os.chown(base, NOBODY, NOBODY)
        job = base / "42"
        (job / "out").mkdir(parents=True)
        (job / "out" / "report.txt").write_text("root's")
        (job / "mine.txt").write_text("the daemon's")
        os.chown(job, NOBODY, NOBODY)
        os.chown(job / "mine.txt", NOBODY, NOBODY)  # out/ and its file stay root's
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the daemon's user
            try:
                os.close(read)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                handler = logging.StreamHandler(os.fdopen(write, "w"))
                logging.getLogger("multiflexid.executors.jobdir").addHandler(handler)
                gone = remove_job_dir(job, {"MULTIFLEXI_JOB_ID": 42})
                handler.flush()
                os._exit(0 if not gone else 3)
            except BaseException:
                os._exit(4)
        os.close(write)
        with os.fdopen(read) as pipe:
            said = pipe.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, said
        assert said == (
            f"job directory {job} was not removed: {job}/out/report.txt: Permission denied, "
            f"owned by uid 0 (and 2 more); remove it with `rm -rf {job}` as root\n")
        assert not (job / "mine.txt").exists()  # the rest went
    finally:
        shutil.rmtree(base, ignore_errors=True)
