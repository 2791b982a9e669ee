"""What the run prints at its end besides passed and failed: the e2e timings (build,
install, boot, each booted-system test) and the figures tests measured (fault tests,
monitoring), whatever pytest captured.

`make test` runs the suite on several pytest-xdist workers: each worker hands what its
tests recorded to the controller when it ends (xdist's ``workeroutput``), and the
controller prints it. So does the snapshot report of pytest-textual-snapshot's syrupy,
which xdist would otherwise lose (every snapshot test runs on one worker: see
tests/support/groups.py), and its check that no snapshot is left unused.

Fixtures: ``figures("3 nodes, 2000 jobs: duplicates 0, lost 4")`` and ``timings`` (a dict
of seconds by name).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

FIGURES = pytest.StashKey[list[str]]()
TIMINGS = pytest.StashKey[dict[str, float]]()
SNAPSHOTS = pytest.StashKey[dict[str, Any]]()
KEY = "multiflexi-summary"  # in xdist's workeroutput


@pytest.fixture
def figures(pytestconfig: pytest.Config) -> Callable[[str], None]:
    """``figures("3 nodes, 2000 jobs: duplicates 0, lost 4")``: shown at the end of the run."""
    return pytestconfig.stash.setdefault(FIGURES, []).append


@pytest.fixture(scope="session")
def timings(pytestconfig: pytest.Config) -> dict[str, float]:
    """Durations (seconds) by name, printed in the summary at the end of the run."""
    return pytestconfig.stash.setdefault(TIMINGS, {})


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workeroutput")


@pytest.hookimpl(trylast=True)  # after syrupy's own pytest_sessionfinish made its report
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if not _is_worker(config):
        _fail_on_unused_snapshots(session)
        return
    out: dict[str, Any] = {"figures": config.stash.get(FIGURES, []),
                           "timings": config.stash.get(TIMINGS, {})}
    report = getattr(getattr(config, "_syrupy", None), "report", None)
    if report is not None and report.num_matched + report.num_failed + report.num_unused:
        out["snapshots"] = {"lines": [str(line) for line in report.lines],
                            "unused": report.num_unused}
    config.workeroutput[KEY] = out  # type: ignore[attr-defined]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """In the controller: what a worker that ended recorded."""
    got = getattr(node, "workeroutput", {}).get(KEY)
    if not got:
        return
    config = node.config
    config.stash.setdefault(FIGURES, []).extend(got["figures"])
    config.stash.setdefault(TIMINGS, {}).update(got["timings"])
    if "snapshots" in got:
        merged = config.stash.setdefault(SNAPSHOTS, {"lines": [], "unused": 0})
        merged["lines"] += got["snapshots"]["lines"]
        merged["unused"] += got["snapshots"]["unused"]


def _fail_on_unused_snapshots(session: pytest.Session) -> None:
    """In the controller, what syrupy does without xdist: snapshots no test used fail the
    run (unless --snapshot-update or --snapshot-warn-unused)."""
    snapshots = session.config.stash.get(SNAPSHOTS, None)
    option = session.config.option
    if (snapshots and snapshots["unused"] and not getattr(option, "update_snapshots", False)
            and not getattr(option, "warn_unused_snapshots", False)):
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    measured = config.stash.get(TIMINGS, {})
    if measured:
        terminalreporter.write_sep("-", "e2e timings")
        for name, seconds in measured.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.write_sep("-", "figures")
        for line in lines:
            terminalreporter.write_line(line)
    snapshots = config.stash.get(SNAPSHOTS, None)
    if snapshots and snapshots["lines"]:  # (without xdist syrupy prints its own)
        terminalreporter.write_sep("-", "snapshot report summary")
        for line in snapshots["lines"]:  # (a worker styles them for a terminal)
            terminalreporter.write_line(
                line if terminalreporter.hasmarkup else re.sub(r"\x1b\[[0-9;]*m", "", line))
