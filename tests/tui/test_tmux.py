"""The real `multiflexi-tui` program in a real terminal (tmux), as an admin over SSH sees it:
against the real daemon, run a template with keys and find the job's output on screen."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, program
from tests.support.tmux import Tmux

pytestmark = pytest.mark.e2e


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (apt-get install tmux; .ci/system-packages.sh)")
    session = Tmux(uuid.uuid4().hex[:8])
    yield session
    session.kill()


def test_run_a_template_with_keys_in_the_real_program(
        daemon: DaemonProcess, seeded: dict[str, int], tmux: Tmux) -> None:
    marker = f"tmux-e2e-{uuid.uuid4().hex[:8]}"
    tmux.start(f"{shlex.quote(program('multiflexi-tui'))} --socket "
               f"{shlex.quote(str(daemon.socket))} --view templates")
    # the templates view, filled from the daemon
    tmux.wait_for(lambda t: "manual" in t and "● MultiFlexi · multiflexid" in t
                  and "3 Templates" in t, "the templates view")
    tmux.keys("G")  # the last template: "manual"
    tmux.keys("r")
    tmux.wait_text("Run template #4 manual")
    tmux.keys(f"SCRIPT='echo {marker}; echo err-{marker} >&2'", literal=True)
    tmux.keys("Enter")
    screen = tmux.wait_for(lambda t: "Job #6" in t and "succeeded" in t
                           and f"err-{marker}" in [x.strip() for x in t.splitlines()],
                           "the job's output and its end")
    assert marker in [line.strip() for line in screen.splitlines()]  # an output line
    job = daemon.call("job.get", id=6)
    assert (job["state"], job["schedule_type"]) == ("succeeded", "adhoc-tui")
    tmux.keys("Escape")
    tmux.wait_text("1 Companies")  # (a key right after Escape would read as Alt+key)
    tmux.keys("4")  # the jobs view has the new job on top
    tmux.wait_for(lambda t: any(line.strip().startswith("6 ") and "succeeded" in line
                                for line in t.splitlines()), "job 6 in the jobs view")
    tmux.keys("q")
    screen = tmux.wait_for(lambda t: "EXITED=" in t, "the program to quit")
    assert "EXITED=0" in screen and "Traceback" not in screen


def test_the_real_program_says_when_the_daemon_is_not_running(
        tmux: Tmux, tmp_path: object) -> None:
    tmux.start(f"{shlex.quote(program('multiflexi-tui'))} --socket /nonexistent/mf.sock")
    screen = tmux.wait_text("multiflexid is not running")
    assert "reconnecting automatically" in screen.replace("\n", " ")
    assert "Traceback" not in screen
    tmux.keys("q")
    screen = tmux.wait_for(lambda t: "EXITED=" in t, "the program to quit")
    assert "EXITED=0" in screen and "Traceback" not in screen


def test_help_option() -> None:
    out = subprocess.run([program("multiflexi-tui"), "--help"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert "--socket PATH" in out and "MULTIFLEXI_SOCKET" in out
    assert "/run/multiflexi/multiflexid.sock" in out


RUN_AS_NOBODY = """\
import os, sys
# Import all the TUI needs while still root: the interpreter may live where nobody
# cannot read (/root/.pyenv), the project and its venv are world-readable.
import multiflexi_tui.app as tui_app
from multiflexi_tui.screens.help import _groups
_groups()
import textual.drivers.linux_driver, textual._xterm_parser, textual.widgets  # noqa
import encodings.idna, unicodedata, termios, tty, select, selectors  # noqa
from textual.widgets import *  # noqa
os.setgroups([]); os.setgid(65534); os.setuid(65534)
tui_app.main(sys.argv[1:])
"""


@pytest.mark.root_only
def test_a_refused_user_sees_the_daemons_reason(tmux: Tmux, tui_core: object,
                                                seeded: dict[str, int]) -> None:
    """The real daemon refuses uid 65534 (not in group multiflexi); the TUI, run as that
    user, shows the daemon's reason instead of a lost connection or a traceback."""
    import sys
    import tempfile

    from tests.support.daemon import running_daemon

    if os.geteuid() != 0:
        pytest.fail("needs root (switches to uid 65534); make test leaves it out otherwise")
    public = Path(tempfile.mkdtemp(prefix="mftui-pub-"))
    public.chmod(0o755)
    try:
        env = {k: v for k, v in os.environ.items() if k.startswith("MULTIFLEXI_")}
        env["MULTIFLEXI_SOCKET"] = str(public / "mf.sock")
        script = public / "run_as_nobody.py"
        script.write_text(RUN_AS_NOBODY)
        with running_daemon(env, public) as d:
            d.socket.chmod(0o666)  # past the file mode: the daemon itself must refuse
            tmux.start(f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} "
                       f"--socket {shlex.quote(str(d.socket))}")
            screen = tmux.wait_text("refused this user")
            flat = " ".join(screen.split())
            assert "user nobody (uid 65534) may not use multiflexid" in flat, screen
            assert "Traceback" not in screen
            tmux.keys("q")
            assert "EXITED=0" in tmux.wait_for(lambda t: "EXITED=" in t, "the program to quit")
    finally:
        shutil.rmtree(public, ignore_errors=True)


def test_edit_a_templates_configuration_and_run_it_in_the_real_program(
        daemon: DaemonProcess, seeded: dict[str, int], tmux: Tmux) -> None:
    """`e` on a template, a new configuration value, `ctrl+s`; then `r`: the job runs with
    the new value (its environment and its output say so)."""
    marker = f"edited-{uuid.uuid4().hex[:8]}"
    tmux.start(f"{shlex.quote(program('multiflexi-tui'))} --socket "
               f"{shlex.quote(str(daemon.socket))} --view templates")
    tmux.wait_for(lambda t: "manual" in t and "● MultiFlexi · multiflexid" in t,
                  "the templates view")
    tmux.keys("G")  # the last template: "manual" (SCRIPT: echo by hand)
    tmux.keys("e")
    tmux.wait_for(lambda t: "Edit run template #4 manual" in t
                  and "Never runs by itself" in t, "the editor, loaded (its next due times)")
    tmux.keys("C-n")  # the Configuration tab; the first input (SCRIPT) has the focus
    tmux.wait_text("echo by hand")
    tmux.keys("C-u")
    # Textual may run C-u's action (a binding) after printable keys that arrive in the same
    # read, emptying what they typed: wait for the field to be empty first.
    tmux.wait_for(lambda t: "echo by hand" not in t, "the value cleared")
    tmux.keys(f"echo {marker}", literal=True)
    tmux.wait_text(f"echo {marker}")
    tmux.keys("C-s")
    tmux.wait_for(lambda t: "3 Templates" in t and "saved" in t, "back on the list, saved")
    assert daemon.call("runtemplate.get", id=4)["config_keys"] == ["SCRIPT"]
    tmux.keys("r")
    tmux.wait_text("Run template #4 manual")
    tmux.keys("Enter")
    tmux.wait_for(lambda t: "Job #6" in t and "succeeded" in t
                  and marker in [x.strip() for x in t.splitlines()],
                  "the job's output with the new value")
    job = daemon.call("job.get", id=6)
    assert job["state"] == "succeeded"
    assert job["environment"]["SCRIPT"] == f"echo {marker}"
    tmux.keys("q")
    screen = tmux.wait_for(lambda t: "EXITED=" in t, "the program to quit")
    assert "EXITED=0" in screen and "Traceback" not in screen
