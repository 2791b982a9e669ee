"""multiflexid running container jobs through real Podman and real Docker (both databases)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from multiflexid.core import Core
from multiflexid.domain.config import MASK
from multiflexid.executors.podman import LOG_FACTOR
from tests.conftest import Env
from tests.support.daemon import DaemonProcess, running_daemon
from tests.support.docker import docker_service
from tests.support.engines import ENGINE_PARAMS, Engine, engine_for
from tests.support.factory import make_template, shell_app
from tests.support.podman import TEST_IMAGE, podman_conf, podman_image, podman_service

__all__ = ["docker_service", "podman_conf", "podman_image", "podman_service"]  # fixtures


@pytest.fixture(params=ENGINE_PARAMS)
def engine(request: pytest.FixtureRequest) -> Engine:
    return engine_for(request, request.param)


def engine_env(engine: Engine, url: str | None = None) -> dict[str, str]:
    """What points the daemon at the engine's API (the other one stays unset)."""
    return {f"MULTIFLEXI_{engine.name.upper()}_URL": url or engine.url}


@pytest.fixture
def daemon(mf_env: Env, core: Core, tmp_path: Path, engine: Engine) -> Iterator[DaemonProcess]:
    core.ensure_schema()
    with running_daemon(mf_env.vars(), tmp_path, extra_env=engine_env(engine)) as d:
        yield d


def _container_app(image: str) -> dict:
    doc = shell_app("Boxed")
    doc["ociimage"] = image
    doc["environment"]["RESULT_FILE"] = {"type": "string", "description": "report",
                                         "defval": "out.txt"}
    doc["artifacts"] = [{"name": "out", "path": r"out\.txt", "type": "text"}]
    return doc


def test_container_job_output_env_and_artifact(core: Core, daemon: DaemonProcess,
                                               engine: Engine) -> None:
    script = ('printf "[%s]\\n" "$VALUE"; echo to-stderr >&2; '
              'echo written-inside > "$RESULT_FILE"; exit 5')
    rt = make_template(core, app_doc=_container_app(TEST_IMAGE), name="boxed",
                       executor=engine.name, config={"SCRIPT": script})
    nasty = "a b $(id) ; 'q' \"dq\""
    job = daemon.call("runtemplate.run", id=rt, env={"VALUE": nasty})
    done = daemon.wait_job(job["id"], timeout=90)
    assert (done["state"], done["exitcode"], done["executor"]) == ("failed", 5, engine.name)
    out = daemon.output(job["id"])
    assert f"[{nasty}]\n" in out
    chunks = daemon.call("job.output", id=job["id"])["chunks"]
    assert any(c["stream"] == "stderr" and "to-stderr" in c["data"] for c in chunks)
    files = {a["filename"]: a for a in done["artifacts"]}
    assert "out.txt" in files and files["out.txt"]["size"] == len("written-inside\n")
    assert [c for c in engine.job_containers() if c.endswith(f"-{job['id']}")] == []


def test_missing_image_fails_with_the_reason(core: Core, daemon: DaemonProcess,
                                             engine: Engine) -> None:
    rt = make_template(core, app_doc=_container_app("localhost/no-such-image:1"),
                       name="noimage", executor=engine.name)
    done = daemon.wait_job(daemon.call("runtemplate.run", id=rt)["id"], timeout=90)
    assert done["state"] == "failed"
    assert "localhost/no-such-image:1" in (done["reason"] or "")
    assert "did not start" in daemon.output(done["id"])


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@pytest.mark.parametrize("backend", ["sqlite"])  # about the engine, not the database
def test_a_job_the_engine_lost_fails_with_the_reason(
    core: Core, mf_env: Env, tmp_path: Path, engine: Engine
) -> None:
    # The engine's API dies while the job runs: the job does not hang in "running"; it
    # fails with why, and its container (which outlived the API) is removed once the API
    # is back, by the same daemon, without anyone's help.
    core.ensure_schema()
    with engine.private(tmp_path) as service, running_daemon(
            mf_env.vars(), tmp_path, extra_env=engine_env(engine, service.url)) as daemon:
        rt = make_template(core, app_doc=_container_app(TEST_IMAGE), name="lost",
                           executor=engine.name, config={"SCRIPT": "echo started; sleep 120"})
        job = daemon.call("runtemplate.run", id=rt)
        name = f"multiflexi-job-{job['id']}"
        _wait(lambda: "started" in daemon.output(job["id"]), 60, "the job's first line")
        service.kill()
        done = daemon.wait_job(job["id"], timeout=60)
        assert (done["state"], done["exitcode"]) == ("failed", None)
        assert done["reason"].startswith(
            f"lost track of container {name}: cannot reach the {engine.name} API at "
            f"{service.url}: "), done["reason"]
        assert done["reason"].endswith(
            f"its exit code is unknown; container {name} is removed once the {engine.name} "
            "API answers again"), done["reason"]
        service.start()
        _wait(lambda: not engine.exists(name, service.url), 30, f"{name} removed")


@pytest.mark.parametrize("backend", ["sqlite"])  # about the engine, not the database
def test_a_container_left_by_a_killed_daemon_is_removed_when_it_starts_again(
    core: Core, mf_env: Env, tmp_path: Path, engine: Engine
) -> None:
    # multiflexid is killed (kill -9, OOM, power) while a container job runs: the
    # container finishes with nobody to remove it. The next multiflexid marks the job
    # lost and removes the container (and its log) from the engine's storage.
    core.ensure_schema()
    env = engine_env(engine)
    rt = make_template(core, app_doc=_container_app(TEST_IMAGE), name="orphan",
                       executor=engine.name, config={"SCRIPT": "echo started; sleep 2"})
    with running_daemon(mf_env.vars(), tmp_path, extra_env=env) as daemon:
        job = daemon.call("runtemplate.run", id=rt)
        name = f"multiflexi-job-{job['id']}"
        _wait(lambda: "started" in daemon.output(job["id"]), 60, "the job's first line")
        daemon.kill9()
    _wait(lambda: not (engine.inspect(name) or {"State": {"Running": True}})["State"]
          ["Running"], 30, f"{name} exited")
    assert engine.exists(name)  # finished, and nobody removed it
    with running_daemon(mf_env.vars(), tmp_path, extra_env=env) as daemon:
        assert daemon.call("job.get", id=job["id"])["state"] == "lost"
        _wait(lambda: not engine.exists(name), 30, f"{name} removed")


PODMAN = [p for p in ENGINE_PARAMS if p.id == "podman"]


@pytest.mark.parametrize("engine", PODMAN, indirect=True)
def test_a_secret_split_by_a_pause_is_masked_in_podmans_log_stream(
        core: Core, daemon: DaemonProcess, engine: Engine) -> None:
    """Podman's log stream brings the output in its own pieces: a secret printed in two
    parts with a pause between (longer than the partial-line wait), once after a line of
    64 KiB less 3 bytes, is masked in the stored output and in the live stream."""
    script = ("printf 'pass: hun'; sleep 1; printf 'ter22\\n'; printf '%65533s' ''; "
              "printf hun; sleep 1; printf 'ter22 end\\n'")
    rt = make_template(core, app_doc={**shell_app("Boxed"), "ociimage": TEST_IMAGE},
                       name="split",
                       executor=engine.name, config={"SCRIPT": script})
    live: list[dict] = []
    with daemon.client() as watcher:
        job = daemon.call("runtemplate.run", id=rt, env={"TOKEN": "hunter22"})
        watcher.call("events.subscribe", job_output=job["id"])
        done = daemon.wait_job(job["id"], timeout=90)
        live = [p for kind, p in watcher.notifications(timeout=1.0) if kind == "job.output"]
    assert done["state"] == "succeeded", daemon.output(job["id"])
    masked = f"pass: {MASK}\n" + " " * 65533 + f"{MASK} end\n"
    assert daemon.output(job["id"]) == masked
    assert "".join(c["data"] for c in sorted(live, key=lambda c: c["seq"])) == masked


@pytest.mark.parametrize("engine", PODMAN, indirect=True)
@pytest.mark.parametrize("backend", ["sqlite"])  # about the engine, not the database
def test_podmans_copy_of_a_big_output_is_bounded_and_goes_with_the_container(
        core: Core, mf_env: Env, tmp_path: Path, engine: Engine) -> None:
    """A job prints 1 MB under an output cap of 2,000 bytes: Podman's log file of the
    running container stays within LOG_FACTOR times the cap, and is gone with the
    container when the job ends."""
    core.ensure_schema()
    env = {**engine_env(engine), "MULTIFLEXI_OUTPUT_CAP_BYTES": "2000"}
    script = ("i=0; while [ $i -lt 1000 ]; do printf '%999s\\n' ''; i=$((i+1)); done; "
              "echo flooded; sleep 60")
    rt = make_template(core, app_doc=_container_app(TEST_IMAGE), name="flood",
                       executor=engine.name, config={"SCRIPT": script})
    with running_daemon(mf_env.vars(), tmp_path, extra_env=env) as daemon:
        job = daemon.call("runtemplate.run", id=rt)
        name = f"multiflexi-job-{job['id']}"
        _wait(lambda: engine.exists(name), 60, f"{name} created")
        log = Path((engine.inspect(name) or {})["HostConfig"]["LogConfig"]["Path"])
        _wait(lambda: log.exists() and b"flooded" in log.read_bytes(), 60, "the flood")
        assert log.stat().st_size <= 2000 * LOG_FACTOR, log.stat().st_size
        daemon.call("job.cancel", id=job["id"])
        done = daemon.wait_job(job["id"], timeout=60)
        kept = sum(len(c["data"]) for c in daemon.call("job.output", id=job["id"])["chunks"]
                   if c["stream"] == "stdout")
    assert done["state"] == "cancelled" and kept <= 2000 and done["output_dropped"], done
    assert not engine.exists(name) and not log.exists()
