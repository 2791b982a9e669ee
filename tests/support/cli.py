"""Run multiflexi-cli in-process and capture what a user would see."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from multiflexid.cli.base import run_main
from multiflexid.cli.main import cli


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    capsys.readouterr()
    code = run_main(cli, list(args))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)
