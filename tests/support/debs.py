"""Building the project's .deb from the tracked files of this checkout (root only).

Shared by the package tests (tests/e2e/test_deb.py installs it on this machine,
tests/e2e/test_systemd.py in a booted Debian container). The e2e conftest builds it once
per test session; `bumped_copy` makes the "next version" of the same tree for upgrades.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from email.utils import formatdate
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PKG = "multiflexi"
VERSION_FILE = "shared/multiflexi/__init__.py"


class BuildError(Exception):
    """dpkg-buildpackage failed; the message has the end of its log."""


def project_version(tree: Path = REPO) -> str:
    found = re.search(r'^__version__ = "(.+)"$', (tree / VERSION_FILE).read_text(), re.M)
    assert found, f"no __version__ in {tree / VERSION_FILE}"
    return found.group(1)


def copy_checkout(dest: Path) -> None:
    """The files git tracks, as they are in the working tree (no .venv, no untracked junk)."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True,
                            check=True).stdout.split(b"\0")
    for raw in filter(None, listed):
        name = os.fsdecode(raw)
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def bump_version(tree: Path, version: str) -> None:
    """Make ``tree`` (a copy of the checkout) version ``version``: the project's
    __version__ and a new debian/changelog entry, as a release would (no dch needed)."""
    init = tree / VERSION_FILE
    old = project_version(tree)
    init.write_text(init.read_text().replace(f'__version__ = "{old}"',
                                             f'__version__ = "{version}"'))
    changelog = tree / "debian/changelog"
    text = changelog.read_text()
    trailer = re.search(r"^ -- (.+?)  ", text, re.M)
    assert trailer, "debian/changelog has no trailer line"
    entry = (f"{PKG} ({version}) unstable; urgency=medium\n\n"
             f"  * Test build of the next version (upgrade tests).\n\n"
             f" -- {trailer.group(1)}  {formatdate(localtime=False)}\n\n")
    changelog.write_text(entry + text)


def build(src: Path, out: Path) -> tuple[list[Path], float]:
    """`dpkg-buildpackage -us -uc -b` in ``src`` (a copy of the checkout, removed after);
    the .debs land in ``out`` (src's parent) with build.log. Returns them and seconds."""
    assert src.parent == out, "dpkg-buildpackage writes the .debs next to the source tree"
    # Debian's tools first (not the pyenv python: PLATFORM.md); nothing of the developer's
    # virtualenv. pip's own cache (~/.cache/pip) keeps downloads between runs.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "MULTIFLEXI_"))}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    started = time.monotonic()
    result = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env,
                            capture_output=True, text=True, timeout=900, check=False)
    seconds = time.monotonic() - started
    log = out / "build.log"
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
        raise BuildError(f"dpkg-buildpackage failed (exit {result.returncode}); "
                         f"full log {log}\n{tail}")
    shutil.rmtree(src)
    built = sorted(out.glob("*.deb"))
    assert [p.name.split("_")[0] for p in built] == [PKG], built
    return built, seconds


def build_checkout(out: Path, version: str | None = None) -> tuple[list[Path], float]:
    """The .debs of this checkout's tracked files (at ``version`` if given) in ``out``."""
    src = out / "src"
    copy_checkout(src)
    if version is not None:
        bump_version(src, version)
    return build(src, out)


def next_version(version: str) -> str:
    """0.1.0 -> 0.1.1: what a release after this one is called."""
    head, _, last = version.rpartition(".")
    assert last.isdigit(), f"cannot bump {version!r}"
    return f"{head}.{int(last) + 1}" if head else str(int(last) + 1)
