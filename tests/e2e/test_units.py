"""Every systemd unit in systemd/ passes `systemd-analyze verify`, with no warning.

`systemd-analyze verify` exits 0 even for unknown keys or unparsable values (it only
prints "Unknown key ..., ignoring"), so any output at all fails the test.

It also insists that ExecStart='s program exists on the machine that lints. Our units
name the installed programs (/usr/bin/multiflexid), which exist only where the package
is installed. So the lint runs on a copy whose ExecStart*= programs are replaced by
/bin/true, after checking that each one is one of ours in /usr/bin; nothing else is
changed. Likewise its Documentation= names the package's man page, which is not here
(``--man=no``). test_deb.py lints the installed unit again, unmodified, with the real
program and man page.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT_DIR = Path(__file__).resolve().parents[2] / "systemd"
UNITS = sorted(p for p in UNIT_DIR.iterdir()
               if p.suffix in {".service", ".socket", ".timer", ".path", ".target"})
OUR_PROGRAMS = {"/usr/bin/multiflexid", "/usr/bin/multiflexi-cli"}
EXEC = re.compile(r"^(Exec(?:Start|StartPre|StartPost|Stop|StopPost|Reload|Condition)=)"
                  r"([-@:+!]*)(\S+)(.*)$", re.M)


def lintable_copy(unit: Path, into: Path) -> Path:
    """``unit`` in ``into`` with our programs in Exec*= lines replaced by /bin/true."""
    text = unit.read_text()
    programs = [m.group(3) for m in EXEC.finditer(text)]
    unknown = [p for p in programs if p not in OUR_PROGRAMS]
    assert not unknown, f"{unit.name}: Exec line runs {unknown}, not one of {OUR_PROGRAMS}"
    copy = into / unit.name
    copy.write_text(EXEC.sub(lambda m: f"{m.group(1)}{m.group(2)}/bin/true{m.group(4)}", text))
    return copy


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    return subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_there_are_units() -> None:
    assert [u.name for u in UNITS if u.suffix == ".service"], f"no unit in {UNIT_DIR}"


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    result = verify(lintable_copy(unit, tmp_path))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, f"systemd-analyze verify {unit.name}:\n{output}"


def test_verify_catches_a_bad_key(tmp_path: Path) -> None:
    """The check above would notice a mistake (verify's exit code alone would not)."""
    unit = UNIT_DIR / "multiflexid.service"
    broken = tmp_path / "broken"
    broken.mkdir()
    copy = lintable_copy(unit, broken)
    copy.write_text(copy.read_text().replace("KillMode=mixed", "KilMode=mixed"))
    result = verify(copy)
    assert "Unknown key" in result.stdout + result.stderr


def test_service_keeps_what_jobs_and_admins_rely_on() -> None:
    """Settings that other parts of the system depend on (see the comments in the unit)."""
    text = (UNIT_DIR / "multiflexid.service").read_text()
    settings = dict(
        line.split("=", 1) for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert settings["ExecStart"].startswith("/usr/bin/multiflexid")
    assert settings["User"] == settings["Group"] == "multiflexi"
    assert settings["RuntimeDirectory"] == "multiflexi"  # /run/multiflexi/multiflexid.sock
    assert settings["RuntimeDirectoryMode"] == "0750"  # group multiflexi reaches the socket
    assert settings["StateDirectory"] == "multiflexi"
    assert settings["ConfigurationDirectory"] == "multiflexi"
    assert settings["KillMode"] == "mixed"  # jobs are stopped by the daemon, not by systemd
    assert settings["Restart"] == "on-failure"
    assert "WatchdogSec" in settings
    # Room for stop_grace_seconds (10 s by default) plus stopping the jobs.
    assert int(settings["TimeoutStopSec"].rstrip("s")) >= 30
    assert settings["OOMPolicy"] == "continue"
    # The daemon reaches Podman's API socket and remote services.
    assert "AF_UNIX" in settings["RestrictAddressFamilies"]
    assert "AF_INET" in settings["RestrictAddressFamilies"]
