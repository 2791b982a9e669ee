"""The argv of a job: ``executable`` plus the ``cmdparams`` template, never a shell string.

The template is split into arguments the way a shell would split it *as written by the
app's author* (quotes group words), then ``{VAR}`` / ``${VAR}`` placeholders are filled
in each argument separately. A value with spaces, quotes, ``;`` or ``$(...)`` therefore
stays one literal argument. An argument made only of placeholders that all came out
empty is dropped, as the original's shell would have dropped it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from .config import expand

_ONLY_PLACEHOLDERS = re.compile(r"^(?:\$\{[A-Za-z0-9_]+\}|\{[A-Za-z0-9_]+\})+$")


class CommandError(ValueError):
    """The application's command line cannot be built (the message names the field)."""


def build_argv(executable: str, cmdparams: str, env: Mapping[str, str]) -> list[str]:
    exe, _ = expand(executable.strip(), env)
    if not exe:
        raise CommandError("executable: empty")
    try:
        words = shlex.split(cmdparams or "", comments=False, posix=True)
    except ValueError as exc:
        raise CommandError(f"cmdparams: cannot split {cmdparams!r}: {exc}") from None
    argv = [exe]
    for word in words:
        value, _ = expand(word, env)
        if value == "" and _ONLY_PLACEHOLDERS.match(word):
            continue
        argv.append(value)
    return argv
