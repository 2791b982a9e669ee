"""The container executors against real engines: every test runs on Podman (runc, a
local busybox image, a private API service) and on Docker (Debian's dockerd, started by
the session; see tests/support/docker.py for why not Podman's Docker-compatible API).

Every test calls ``executor.run()`` with a JobSpec, as the dispatcher will, and checks
that no container of its jobs is left behind. What it looks at while the job runs, it
asks the engine itself (tests/support/engines.py), not the executor.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from multiflexid.executors.base import ExecResult, JobSpec, Limits
from multiflexid.executors.container import (
    JOB_LABEL,
    OWNER_LABEL,
    ContainerExecutor,
    container_name,
    owner_label,
    parse_memory,
)
from tests.support.docker import docker_service
from tests.support.engines import ENGINE_PARAMS, Engine, Service, engine_for
from tests.support.podman import TEST_IMAGE, podman_conf, podman_image, podman_service

__all__ = ["docker_service", "podman_conf", "podman_image", "podman_service"]  # fixtures

# Job ids of this session: far from any real daemon's and from other sessions'.
_ids = itertools.count(900_000_000 + (os.getpid() % 10_000) * 10_000)


@dataclass
class Run:
    result: ExecResult
    chunks: list[tuple[float, str, bytes]]  # (seconds since run() began, stream, data)
    started: list[int | None]
    started_at: float | None
    seconds: float
    threads: set[str] = field(default_factory=set)  # threads output() was called from

    def out(self, stream: str = "stdout") -> bytes:
        return b"".join(d for _, s, d in self.chunks if s == stream)


def run_job(
    executor: ContainerExecutor,
    spec: JobSpec,
    *,
    cancel_after: float | None = None,
    on_started: Callable[[], Any] | None = None,
) -> Run:
    """Run one job in a fresh event loop; ``cancel_after`` seconds after it started."""

    async def main() -> Run:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        chunks: list[tuple[float, str, bytes]] = []
        pids: list[int | None] = []
        started_at: list[float] = []
        threads: set[str] = set()
        cancel = asyncio.Event()
        helpers: list[asyncio.Future[Any]] = []

        def output(stream: str, data: bytes) -> None:
            threads.add(threading.current_thread().name)
            chunks.append((loop.time() - begin, stream, data))

        def started(pid: int | None) -> None:
            pids.append(pid)
            started_at.append(loop.time() - begin)
            if on_started is not None:
                helpers.append(asyncio.ensure_future(asyncio.to_thread(on_started)))
            if cancel_after is not None:
                loop.call_later(cancel_after, cancel.set)

        result = await executor.run(spec, output, started, cancel)
        seconds = loop.time() - begin
        for h in helpers:
            await h
        return Run(result, chunks, pids, started_at[0] if started_at else None, seconds,
                   threads)

    return asyncio.run(main())


class Jobs:
    """Makes JobSpecs for the test's job directory and remembers their container names."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.names: list[str] = []

    def spec(self, argv: list[str], **kw: Any) -> JobSpec:
        job_id = next(_ids)
        self.names.append(container_name(job_id))
        kw.setdefault("image", TEST_IMAGE)
        kw.setdefault("env", {"MULTIFLEXI_JOB_ID": str(job_id),
                              "MULTIFLEXI_TMP": str(self.workdir)})
        kw.setdefault("grace", 2.0)
        return JobSpec(job_id=job_id, argv=argv, workdir=self.workdir, **kw)


@pytest.fixture(params=ENGINE_PARAMS)
def engine(request: pytest.FixtureRequest) -> Engine:
    return engine_for(request, request.param)


@pytest.fixture
def jobs(tmp_path: Path, engine: Engine) -> Iterator[Jobs]:
    workdir = tmp_path / "job"
    workdir.mkdir()
    j = Jobs(workdir)
    yield j
    left = set(engine.job_containers()) & set(j.names)
    assert not left, f"containers left behind: {left}"


@pytest.fixture
def executor(engine: Engine) -> Iterator[ContainerExecutor]:
    ex = engine.executor()
    yield ex
    ex.close()


@pytest.fixture
def private_service(engine: Engine, tmp_path: Path) -> Iterator[Service]:
    """A second API service of our own, to stop, pause or kill in the middle of a test."""
    with engine.private(tmp_path) as service:
        yield service


# -- output ---------------------------------------------------------------------------


def test_output_arrives_live(executor: ContainerExecutor, jobs: Jobs) -> None:
    r = run_job(executor, jobs.spec(["sh", "-c", "echo first; sleep 2; echo second"]))
    assert r.result.outcome == "exited" and r.result.exitcode == 0
    assert r.out() == b"first\nsecond\n"
    first_at, _, first = r.chunks[0]
    assert first == b"first\n"
    assert r.started_at is not None
    # The first line is there well before the job ends (it sleeps 2 s after printing).
    assert first_at - r.started_at < 1.0, r.chunks
    assert r.seconds - first_at > 1.5, (first_at, r.seconds)
    assert r.threads == {threading.main_thread().name}  # delivered on the loop's thread
    assert r.started and r.started[0] and r.started[0] > 1  # the container's init pid


def test_stdout_and_stderr_are_kept_apart(executor: ContainerExecutor, jobs: Jobs) -> None:
    script = "echo out1; echo err1 >&2; printf out2; printf err2 >&2; echo; echo err3 >&2"
    r = run_job(executor, jobs.spec(["sh", "-c", script]))
    assert r.result.exitcode == 0
    assert r.out("stdout") == b"out1\nout2\n"
    assert r.out("stderr") == b"err1\nerr2err3\n"


def test_bytes_arrive_exactly_and_completely(executor: ContainerExecutor, jobs: Jobs) -> None:
    script = (r'printf "\377\376\000x\r\n"; i=0; while [ $i -lt 2000 ]; do echo "o$i"; '
              r'echo "e$i" >&2; i=$((i+1)); done; printf 12345678901234567890; printf tail')
    r = run_job(executor, jobs.spec(["sh", "-c", script]))
    assert r.result.exitcode == 0
    expected_out = (b"\xff\xfe\x00x\r\n" + b"".join(b"o%d\n" % i for i in range(2000))
                    + b"12345678901234567890tail")
    assert r.out("stdout") == expected_out
    assert r.out("stderr") == b"".join(b"e%d\n" % i for i in range(2000))


@pytest.mark.parametrize("engine", [p for p in ENGINE_PARAMS if p.id == "podman"],
                         indirect=True)
def test_podmans_limited_log_loses_nothing_under_the_cap(engine: Engine, jobs: Jobs) -> None:
    """The daemon limits Podman's log file to LOG_FACTOR times the output cap. Output of
    exactly the cap in the costliest shape (empty lines, on both streams, in bursts the
    follower must keep up with) arrives whole: the file never starts anew under it."""
    from multiflexid.executors.podman import LOG_FACTOR

    cap = 4000
    ex = engine.executor(log_max_bytes=cap * LOG_FACTOR)
    try:
        script = ('i=0; while [ $i -lt 2000 ]; do echo; echo >&2; i=$((i+1)); '
                  'if [ $((i % 200)) = 0 ]; then sleep 0.05; fi; done')
        r = run_job(ex, jobs.spec(["sh", "-c", script]))
    finally:
        ex.close()
    assert r.result.exitcode == 0
    assert (r.out("stdout"), r.out("stderr")) == (b"\n" * (cap // 2), b"\n" * (cap // 2))


def test_the_last_bytes_are_never_lost(executor: ContainerExecutor, jobs: Jobs) -> None:
    # The engine's follow stream may end with the container before it sent the last
    # bytes (Docker often does with a last line that has no newline): what it missed
    # comes from the container's log. Several jobs, because a single one often passes.
    script = 'echo "$1"; i=0; while [ $i -lt 300 ]; do echo "e$i" >&2; i=$((i+1)); done; ' \
             'printf "last line without newline $1"'
    for n in range(8):
        r = run_job(executor, jobs.spec(["sh", "-c", script, "sh", str(n)]))
        assert r.out() == f"{n}\nlast line without newline {n}".encode(), (n, r.out())
        assert r.out("stderr") == b"".join(b"e%d\n" % i for i in range(300)), n


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_code_passes_through(executor: ContainerExecutor, jobs: Jobs, code: int) -> None:
    r = run_job(executor, jobs.spec(["sh", "-c", f"exit {code}"]))
    assert (r.result.outcome, r.result.exitcode, r.result.message) == ("exited", code, None)


# -- argv, environment, files -----------------------------------------------------------

NASTY = {
    "SPACES": "a b  c",
    "SUBST": "$(id) `id` ${HOME}",
    "SEMI": "; rm -rf /",
    "QUOTES": "'single' \"double\" \\backslash",
    "GLOB": "* ? [a-z] ~",
    "UNICODE": "Příliš žluťoučký kůň 🐎",
    "NEWLINE": "line1\nline2",
    "EMPTY": "",
    "EQUALS": "a=b=c",
}


def test_environment_arrives_byte_for_byte(
    executor: ContainerExecutor, jobs: Jobs, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTIFLEXI_DAEMON_ONLY", "must not leak")
    env = {**NASTY, "MULTIFLEXI_TMP": str(jobs.workdir)}
    r = run_job(executor, jobs.spec(["env", "-0"], env=env))
    assert r.result.exitcode == 0, r.out("stderr")
    seen = dict(item.split("=", 1) for item in r.out().decode().split("\0") if item)
    assert {k: seen.get(k) for k in env} == env
    assert set(seen) - set(env) <= engine.adds, set(seen) - set(env)


def test_environment_expanded_by_a_shell_stays_literal(
    executor: ContainerExecutor, jobs: Jobs
) -> None:
    # "$VAR" expands once: $(id), `id`, ; and quotes inside the value are not run.
    script = 'printf "%s\\0" "$SPACES" "$SUBST" "$SEMI" "$QUOTES" "$GLOB" "$UNICODE" "$NEWLINE"'
    r = run_job(executor, jobs.spec(["sh", "-c", script], env=NASTY))
    assert r.result.exitcode == 0, r.out("stderr")
    keys = ["SPACES", "SUBST", "SEMI", "QUOTES", "GLOB", "UNICODE", "NEWLINE"]
    assert r.out().split(b"\0")[:-1] == [NASTY[k].encode() for k in keys]


def test_argv_is_not_a_shell_string(executor: ContainerExecutor, jobs: Jobs) -> None:
    args = ["a b", "$(id)", "; rm -rf /", "'\"", "*", "ž🐎", ""]
    r = run_job(executor, jobs.spec(["printf", "%s|", *args]))
    assert r.result.exitcode == 0
    assert r.out() == "".join(f"{a}|" for a in args).encode()


def test_files_written_in_the_job_dir_land_on_the_host(
    executor: ContainerExecutor, jobs: Jobs
) -> None:
    result_file = jobs.workdir / "result.json"
    script = ('pwd; mkdir -p "$MULTIFLEXI_TMP/out" && echo artifact > out/a.txt '
              '&& printf \'{"status": "success"}\' > "$RESULT_FILE"')
    env = {"MULTIFLEXI_TMP": str(jobs.workdir), "RESULT_FILE": str(result_file)}
    r = run_job(executor, jobs.spec(["sh", "-c", script], env=env))
    assert r.result.exitcode == 0, r.out("stderr")
    assert r.out() == f"{jobs.workdir}\n".encode()  # working directory = the job dir
    assert (jobs.workdir / "out" / "a.txt").read_bytes() == b"artifact\n"
    assert result_file.read_text() == '{"status": "success"}'


# -- timeout and cancel ------------------------------------------------------------------


def test_timeout_stops_politely(executor: ContainerExecutor, jobs: Jobs) -> None:
    # catatonit (init) hands SIGTERM to the job, which can clean up and say so.
    script = 'trap "echo got TERM; exit 7" TERM; echo ready; sleep 60 & wait'
    r = run_job(executor, jobs.spec(["sh", "-c", script], timeout=1.0, grace=5.0))
    assert r.result.outcome == "timed_out"
    assert r.result.exitcode == 7
    assert r.out() == b"ready\ngot TERM\n"
    assert r.result.message and "timed out after 1 s; stopped with SIGTERM" in r.result.message
    assert r.seconds < 1 + 5, r.seconds


def test_timeout_kills_after_the_grace(executor: ContainerExecutor, jobs: Jobs) -> None:
    script = 'trap "echo ignoring TERM" TERM; while true; do sleep 0.2; done'
    r = run_job(executor, jobs.spec(["sh", "-c", script], timeout=1.0, grace=2.0))
    assert r.result.outcome == "timed_out"
    assert r.result.exitcode == 137  # SIGKILL
    assert b"ignoring TERM" in r.out()
    assert r.result.message and "SIGKILL after 2 s grace" in r.result.message
    assert 1 + 2 <= r.seconds < 1 + 2 + 4, r.seconds


def test_cancel_stops_the_container(executor: ContainerExecutor, jobs: Jobs) -> None:
    r = run_job(executor, jobs.spec(["sleep", "60"]), cancel_after=0.5)
    assert r.result.outcome == "cancelled"
    assert r.result.message and r.result.message.startswith("cancelled; ")
    assert r.seconds < 0.5 + 2 + 4, r.seconds


def test_cancel_before_start_runs_nothing(executor: ContainerExecutor, jobs: Jobs) -> None:
    async def main() -> ExecResult:
        cancel = asyncio.Event()
        cancel.set()
        return await executor.run(jobs.spec(["sh", "-c", "touch started"]),
                                  lambda s, d: None, lambda p: None, cancel)

    result = asyncio.run(main())
    assert result.outcome == "cancelled"
    assert not (jobs.workdir / "started").exists()


def test_cancelling_the_run_task_still_removes_the_container(
    executor: ContainerExecutor, jobs: Jobs, engine: Engine
) -> None:
    spec = jobs.spec(["sleep", "60"])

    async def main() -> None:
        running = asyncio.Event()
        task = asyncio.ensure_future(
            executor.run(spec, lambda s, d: None, lambda p: running.set(), asyncio.Event())
        )
        await asyncio.wait_for(running.wait(), 10)
        assert engine.exists(container_name(spec.job_id))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert not engine.exists(container_name(spec.job_id))


# -- failing to start --------------------------------------------------------------------


def test_missing_image_fails_to_start(engine: Engine, jobs: Jobs) -> None:
    image = "docker.io/multiflexi/no-such-image:1.0"
    r = run_job(engine.executor(pull=False), jobs.spec(["true"], image=image))
    assert r.result.outcome == "failed_to_start"
    assert r.result.message == (f"image {image} not found in local storage "
                                f"(pull it with `{engine.cli} pull {image}`)")
    assert r.started == [] and r.chunks == []
    assert r.seconds < 2


def test_pull_that_fails_is_reported(engine: Engine, jobs: Jobs) -> None:
    # No registry is reachable from these machines: the pull itself must fail cleanly.
    ex = engine.executor(pull=True, pull_timeout=60)
    image = "docker.io/multiflexi/no-such-image:1.0"
    r = run_job(ex, jobs.spec(["true"], image=image))
    assert r.result.outcome == "failed_to_start"
    assert r.result.message and r.result.message.startswith(f"pulling image {image} failed: ")


@pytest.mark.docker
@pytest.mark.root_only
def test_docker_pulls_a_missing_image_by_default(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # As `docker run` does; Podman's executor leaves pulling to the admin unless told.
    docker = engine_for(request, "Docker")
    image = "docker.io/multiflexi/no-such-image:1.0"
    r = run_job(docker.executor_class(docker.url, api_timeout=10),
                Jobs(tmp_path).spec(["true"], image=image))
    assert r.result.outcome == "failed_to_start"
    assert r.result.message and r.result.message.startswith(f"pulling image {image} failed: ")


def test_command_not_found_fails_to_start(
    executor: ContainerExecutor, jobs: Jobs, engine: Engine
) -> None:
    r = run_job(executor, jobs.spec(["/no/such/program", "arg"]))
    assert r.result.outcome == "failed_to_start"
    assert r.result.message == (
        f"{engine.cli} could not start container {jobs.names[-1]}: cannot execute "
        "/no/such/program: No such file or directory")


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (Limits(memory="lots"), "invalid memory limit 'lots'"),
        (Limits(cpus=0), "invalid CPU limit 0"),
        (Limits(network="no such net!"), "unsupported network mode 'no such net!'"),
    ],
)
def test_bad_limits_fail_to_start(
    executor: ContainerExecutor, jobs: Jobs, limits: Limits, message: str
) -> None:
    r = run_job(executor, jobs.spec(["true"], limits=limits))
    assert r.result.outcome == "failed_to_start"
    assert r.result.message and r.result.message.startswith(message)


def test_unknown_network_is_refused(executor: ContainerExecutor, jobs: Jobs) -> None:
    r = run_job(executor, jobs.spec(["true"], limits=Limits(network="nosuchnetwork")))
    assert r.result.outcome == "failed_to_start"
    assert r.result.message and "nosuchnetwork" in r.result.message


def test_socket_that_does_not_exist(engine: Engine, jobs: Jobs, tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/nothing-here.sock"
    ex = engine.executor(url, api_timeout=5)
    r = run_job(ex, jobs.spec(["true"]))
    assert r.result.outcome == "failed_to_start"
    cli = engine.cli
    assert r.result.message == (
        f"cannot reach the {engine.name} API at {url}: socket {tmp_path}/nothing-here.sock "
        f"does not exist (is the {engine.name} service running? "
        f"`systemctl enable --now {cli}.socket`)"
    )
    assert r.seconds < 1
    assert asyncio.run(ex.check()) == r.result.message


def test_bad_url_fails_to_start(engine: Engine, jobs: Jobs) -> None:
    ex = engine.executor("ftp://example.org/engine")
    r = run_job(ex, jobs.spec(["true"]))
    assert r.result.outcome == "failed_to_start"
    assert r.result.message and r.result.message.startswith(
        f"invalid {engine.name} API URL 'ftp://example.org/engine'")
    assert asyncio.run(ex.check()) == r.result.message


def test_service_stopped(private_service: Service, jobs: Jobs, engine: Engine) -> None:
    ex = engine.executor(private_service.url, api_timeout=5)
    assert asyncio.run(ex.check()) is None
    private_service.stop()
    r = run_job(ex, jobs.spec(["true"]))
    assert r.result.outcome == "failed_to_start"
    assert r.result.message and r.result.message.startswith(
        f"cannot reach the {engine.name} API at {private_service.url}: ")
    assert r.seconds < 1
    assert asyncio.run(ex.check()) is not None


def test_service_that_does_not_answer(
    private_service: Service, jobs: Jobs, engine: Engine
) -> None:
    ex = engine.executor(private_service.url, api_timeout=1)
    private_service.pause()
    try:
        r = run_job(ex, jobs.spec(["true"]))
        check = asyncio.run(ex.check())
    finally:
        private_service.resume()
    assert r.result.outcome == "failed_to_start"
    assert r.result.message == (
        f"the {engine.name} API at {private_service.url} did not answer within 1 s")
    assert r.seconds < 3
    assert check == r.result.message


def test_service_restarted_while_the_job_runs(
    private_service: Service, jobs: Jobs, engine: Engine
) -> None:
    # The exit code is still learnt (wait reconnects) and no output is lost (what the
    # stream missed is fetched from the log once the container has exited).
    ex = engine.executor(private_service.url, api_timeout=5, reconnect_window=10)

    def restart() -> None:
        time.sleep(0.5)
        private_service.kill()
        time.sleep(1.0)
        private_service.start()

    script = "echo before; sleep 3; echo after; echo err >&2; exit 5"
    r = run_job(ex, jobs.spec(["sh", "-c", script]), on_started=restart)
    assert (r.result.outcome, r.result.exitcode) == ("exited", 5), r.result
    assert r.out() == b"before\nafter\n"
    assert r.out("stderr") == b"err\n"


def test_service_gone_while_the_job_runs(
    private_service: Service, jobs: Jobs, engine: Engine
) -> None:
    # Nobody can tell the exit code then: the result says so, promptly, instead of hanging.
    ex = engine.executor(private_service.url, api_timeout=2, reconnect_window=1)
    spec = jobs.spec(["sleep", "30"])
    try:
        def crash() -> None:
            time.sleep(0.5)
            private_service.kill()

        r = run_job(ex, spec, on_started=crash)
        assert r.result.outcome == "lost" and r.result.exitcode is None
        assert r.result.message and r.result.message.startswith(
            f"lost track of container {container_name(spec.job_id)}: cannot reach")
        assert "its exit code is unknown" in r.result.message
        assert r.seconds < 10
    finally:  # the container outlives the service
        engine.force_remove(container_name(spec.job_id))


def test_service_hangs_while_the_job_runs(
    private_service: Service, jobs: Jobs, engine: Engine
) -> None:
    # The service stops answering (SIGSTOP) but keeps its connections open: the timeout
    # still ends run() within bounds, with the reason, and the log stream is cut.
    ex = engine.executor(private_service.url, api_timeout=1, reconnect_window=1,
                         drain_timeout=1)
    spec = jobs.spec(["sh", "-c", "echo hello; sleep 30"], timeout=2.0, grace=1.0)

    def hang() -> None:
        time.sleep(1.0)
        private_service.pause()

    try:
        r = run_job(ex, spec, on_started=hang)
    finally:
        private_service.resume()
        engine.force_remove(container_name(spec.job_id))
    assert r.result.outcome == "timed_out"
    assert r.result.exitcode is None
    assert r.result.message == (
        f"timed out after 2 s; could not stop it: the {engine.name} API at "
        f"{private_service.url} did not answer within 1 s; {engine.name} did not report the "
        f"container's exit in time; container {container_name(spec.job_id)} is "
        f"removed once the {engine.name} API answers again")
    assert r.out() == b"hello\n"
    # timeout + stop (grace + api timeout) + wait (api timeout + reconnect) + drain + cut
    # + removal (api timeout), and a little slack
    assert r.seconds < 2 + 2 + 2 + 1 + 1 + 1 + 2, r.seconds


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_container_of_a_lost_job_is_removed_when_the_api_is_back(
    private_service: Service, jobs: Jobs, engine: Engine
) -> None:
    # The engine goes away while the job runs: the job ends at once as lost, with the
    # reason, and its container (still running: the engine's containers outlive it) is
    # removed as soon as the engine answers again; no admin has to find it.
    ex = engine.executor(private_service.url, api_timeout=2, reconnect_window=1,
                         retry_interval=0.2)
    spec = jobs.spec(["sleep", "60"])
    name = container_name(spec.job_id)
    try:
        def crash() -> None:
            time.sleep(0.5)
            private_service.kill()

        r = run_job(ex, spec, on_started=crash)
        assert r.result.outcome == "lost"
        assert r.result.message and r.result.message.endswith(
            f"its exit code is unknown; container {name} is removed once the {engine.name} "
            "API answers again")
        private_service.start()
        assert engine.exists(name, private_service.url)  # still there, still running
        assert wait_until(lambda: not engine.exists(name, private_service.url), 15), \
            f"{name} was not removed after the {engine.name} API came back"
    finally:
        ex.close()
        engine.force_remove(name)


# A daemon that dies (kill -9) while its job runs: the container finishes, nobody removes it.
_DIES_MID_JOB = """
import asyncio, sys
from pathlib import Path
from multiflexid.executors.base import JobSpec
from multiflexid.executors.engines import engine_class
cls, url, workdir, job_id, image = sys.argv[1:]
ex = engine_class(cls)(url)
spec = JobSpec(job_id=int(job_id), argv=["sh", "-c", "echo output; sleep 1"], env={},
               workdir=Path(workdir), image=image)
def started(pid):
    print("started", flush=True)
async def main():
    await ex.run(spec, lambda s, d: None, started, asyncio.Event())
    print("ended", flush=True)
asyncio.run(main())
"""


def test_containers_of_a_daemon_that_died_are_swept(
    engine: Engine, jobs: Jobs, tmp_path: Path
) -> None:
    # Its finished container, and the container's log with it, must not stay in the
    # engine's storage for good: the next daemon's executor removes it. A container of
    # a daemon that still runs (this test process) is left alone.
    spec = jobs.spec(["true"])
    name = container_name(spec.job_id)
    child = subprocess.Popen(
        [sys.executable, "-c", _DIES_MID_JOB, engine.name, engine.url, str(jobs.workdir),
         str(spec.job_id), TEST_IMAGE], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "started\n"
        child.kill()
    finally:
        child.wait(10)
    assert wait_until(lambda: not (engine.inspect(name) or {"State": {"Running": True}})
                      ["State"]["Running"], 15)
    alive = container_name(next(_ids))
    jobs.names.append(alive)
    engine.start_container(alive, ["sleep", "60"],
                           labels={JOB_LABEL: "1", OWNER_LABEL: owner_label()})
    ex = engine.executor(sweep=True)
    try:
        assert wait_until(lambda: not engine.exists(name), 15), f"{name} was not swept"
        assert engine.exists(alive)
    finally:
        ex.close()
        engine.force_remove(alive)


@pytest.mark.root_only
def test_files_of_a_job_belong_to_the_owner_of_its_directory(engine: Engine) -> None:
    # The daemon runs as user multiflexi, the engine as root: what the job writes into
    # its directory (subdirectories too) is the daemon's to collect and to delete.
    nobody = 65534
    base = Path(tempfile.mkdtemp(prefix="mf-owner-"))
    try:
        os.chown(base, nobody, nobody)
        workdir = base / "job"
        workdir.mkdir(mode=0o700)
        os.chown(workdir, nobody, nobody)
        job = Jobs(workdir)
        script = 'mkdir -p out/deep && echo x > out/deep/report.txt && id -u && echo "$HOME"'
        ex = engine.executor()
        try:
            r = run_job(ex, job.spec(["sh", "-c", script]))
        finally:
            ex.close()
        assert r.result.exitcode == 0, r.out("stderr")
        assert r.out() == f"{nobody}\n{workdir}\n".encode()
        owners = {p.relative_to(workdir).as_posix(): p.lstat().st_uid
                  for p in workdir.rglob("*")}
        assert owners == {"out": nobody, "out/deep": nobody, "out/deep/report.txt": nobody}
        # The daemon's cleanup, as the daemon's user.
        rm = subprocess.run(["rm", "-rf", "job"], cwd=base, user=nobody, group=nobody,
                            extra_groups=[], capture_output=True, text=True)
        assert rm.returncode == 0 and not workdir.exists(), rm.stderr
        assert set(engine.job_containers()) & set(job.names) == set()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_check_answers(executor: ContainerExecutor) -> None:
    assert asyncio.run(executor.check()) is None


def test_stale_container_of_the_same_name_is_replaced(
    executor: ContainerExecutor, jobs: Jobs, engine: Engine
) -> None:
    spec = jobs.spec(["echo", "fresh"])
    engine.start_container(container_name(spec.job_id), ["sleep", "60"])
    r = run_job(executor, spec)
    assert (r.result.exitcode, r.out()) == (0, b"fresh\n")


# -- isolation and limits ------------------------------------------------------------------


def test_no_network_by_default(executor: ContainerExecutor, jobs: Jobs) -> None:
    r = run_job(executor, jobs.spec(["ls", "/sys/class/net"]))
    assert (r.result.exitcode, r.out()) == (0, b"lo\n")


def test_network_when_the_template_asks(executor: ContainerExecutor, jobs: Jobs) -> None:
    r = run_job(executor, jobs.spec(["ls", "/sys/class/net"], limits=Limits(network="bridge")))
    assert r.result.exitcode == 0
    assert r.out().split() == [b"eth0", b"lo"]


# Prints memory limit, memory+swap limit, pids limit, CPU quota and period, cgroup v1 or v2.
CGROUP_LIMITS = """
cd /sys/fs/cgroup
if [ -e memory/memory.limit_in_bytes ]; then
  cat memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes pids/pids.max
  cat cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us
else
  cat memory.max; echo $(( $(cat memory.max) + $(cat memory.swap.max) )); cat pids.max
  for v in $(cat cpu.max); do echo $v; done
fi
sleep 1
"""


def test_limits_are_applied(executor: ContainerExecutor, jobs: Jobs, engine: Engine) -> None:
    spec = jobs.spec(["sh", "-c", CGROUP_LIMITS], labels={"multiflexi.company": "acme"},
                     limits=Limits(memory="64m", cpus=0.5, pids=50))
    seen: dict[str, Any] = {}
    r = run_job(executor, spec,
                on_started=lambda: seen.update(engine.inspect(jobs.names[-1]) or {}))
    assert r.result.exitcode == 0, r.out("stderr")
    mib64 = str(64 * 1024 * 1024)
    # Inside: the cgroup the job runs in.
    assert r.out().decode().split() == [mib64, mib64, "50", "50000", "100000"]
    # Outside: the container's configuration, looked at while it ran.
    hc = seen["HostConfig"]
    assert (hc["Memory"], hc["MemorySwap"], hc["PidsLimit"]) == (64 << 20, 64 << 20, 50)
    assert (hc["CpuQuota"], hc["CpuPeriod"], hc["NetworkMode"]) == (50000, 100000, "none")
    labels = seen["Config"]["Labels"]  # ours, plus those of the image
    assert labels["multiflexi.company"] == "acme"
    assert labels["multiflexi.job_id"] == str(spec.job_id)


def test_pids_limit_stops_a_fork_bomb(executor: ContainerExecutor, jobs: Jobs) -> None:
    # The limit leaves room for the container's own start (runc's init counts its threads
    # against it; at 5 a loaded machine sometimes could not even start the container).
    script = ("i=0; while [ $i -lt 30 ]; do sleep 5 & i=$((i+1)); done; echo forked; "
              "kill $(jobs -p)")
    r = run_job(executor, jobs.spec(["sh", "-c", script], limits=Limits(pids=12)))
    assert b"can't fork" in r.out("stderr") or b"Resource temporarily" in r.out("stderr"), r


def test_memory_limit_kills_a_hog(executor: ContainerExecutor, jobs: Jobs) -> None:
    # The shell would hold 100 MB in a variable; 32 MiB (swap included) cannot. Without
    # the limit the same job prints "survived" (about 3 s here).
    script = 'x=$(head -c 100000000 /dev/urandom); echo survived'
    r = run_job(executor, jobs.spec(["sh", "-c", script], limits=Limits(memory="32m"),
                                    timeout=60))
    assert r.result.outcome == "exited"
    assert r.result.exitcode == 137, (r.result, r.out("stderr"))  # the OOM killer's SIGKILL
    assert b"survived" not in r.out()


def test_parse_memory() -> None:
    assert parse_memory("512m") == 512 << 20
    assert parse_memory("1.5G") == 3 << 29
    assert parse_memory("2gib") == 2 << 30
    assert parse_memory("1048576") == 1 << 20
    for bad in ("", "0", "lots", "-1m", "5x"):
        with pytest.raises(ValueError):
            parse_memory(bad)


def test_jobs_run_concurrently(executor: ContainerExecutor, jobs: Jobs) -> None:
    specs = [jobs.spec(["sh", "-c", f"sleep 2; echo {i}"]) for i in range(4)]

    async def main() -> list[tuple[ExecResult, bytes]]:
        async def one(spec: JobSpec) -> tuple[ExecResult, bytes]:
            out: list[bytes] = []
            result = await executor.run(spec, lambda s, d: out.append(d), lambda p: None,
                                        asyncio.Event())
            return result, b"".join(out)
        return await asyncio.gather(*(one(s) for s in specs))

    begin = time.monotonic()
    results = asyncio.run(main())
    seconds = time.monotonic() - begin
    assert [(r.exitcode, out) for r, out in results] == [(0, b"%d\n" % i) for i in range(4)]
    assert seconds < 2 * 4 - 2, seconds  # they overlapped


@pytest.mark.podman
def test_status_says_which_engines_answer(mfcli, monkeypatch: pytest.MonkeyPatch,
                                          podman_service: Any, tmp_path: Path) -> None:
    missing = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setenv("MULTIFLEXI_PODMAN_URL", podman_service.url)
    monkeypatch.setenv("MULTIFLEXI_DOCKER_URL", missing)
    r = mfcli("status", "--format", "json")
    assert r.code == 0, r.err
    problem = (f"cannot reach the Docker API at {missing}: socket {tmp_path}/no-docker.sock "
               "does not exist (is the Docker service running? `systemctl enable --now "
               "docker.socket`)")
    assert r.json["engines"] == {
        "Podman": {"url": podman_service.url, "reachable": True, "problem": None},
        "Docker": {"url": missing, "reachable": False, "problem": problem},
    }
    lines = mfcli("status").out.splitlines()
    assert [line.split(None, 1) for line in lines if line.startswith(("Podman", "Docker"))] == [
        ["Podman", f"reachable ({podman_service.url})"],
        ["Docker", f"not reachable: {problem}"],
    ]


@pytest.mark.docker
@pytest.mark.root_only
def test_status_says_docker_answers_when_its_engine_runs(mfcli, monkeypatch: pytest.MonkeyPatch,
                                                          docker_service: Any,
                                                          tmp_path: Path) -> None:
    missing = f"unix://{tmp_path}/no-podman.sock"
    monkeypatch.setenv("MULTIFLEXI_PODMAN_URL", missing)
    monkeypatch.setenv("MULTIFLEXI_DOCKER_URL", docker_service.url)
    r = mfcli("status", "--format", "json")
    assert r.code == 0, r.err
    assert r.json["engines"]["Docker"] == {"url": docker_service.url, "reachable": True,
                                           "problem": None}
    assert r.json["engines"]["Podman"]["reachable"] is False
    lines = mfcli("status").out.splitlines()
    assert [line.split(None, 1) for line in lines if line.startswith("Docker")] == [
        ["Docker", f"reachable ({docker_service.url})"]]


@pytest.mark.parametrize("engine_name", ["Podman", "Docker"])
def test_an_absent_engine_costs_the_daemon_nothing(engine_name: str, tmp_path: Path) -> None:
    # The daemon's executors sweep; with no engine there (Docker not installed, say) the
    # janitor tries again later, it does not spin (which starved the daemon's jobs of CPU).
    from multiflexid.executors.engines import engine_class

    ex = engine_class(engine_name)(f"unix://{tmp_path}/absent.sock", sweep=True)
    try:
        time.sleep(0.2)  # its first sweep fails
        janitor = [t for t in threading.enumerate() if t.name.endswith("-janitor")]
        assert janitor, "no janitor thread"
        begin = time.process_time()
        time.sleep(1.0)
        assert time.process_time() - begin < 0.2, "the janitor spins"
    finally:
        ex.close()
