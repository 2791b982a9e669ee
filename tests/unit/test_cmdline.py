from __future__ import annotations

import pytest

from multiflexid.domain.cmdline import CommandError, build_argv


def test_values_stay_single_literal_arguments() -> None:
    env = {"A": "a b", "B": "$(id); rm -rf / 'x' \"y\"", "C": "č"}
    assert build_argv("app", "--a {A} --b=${B} {C}", env) == [
        "app", "--a", "a b", "--b=$(id); rm -rf / 'x' \"y\"", "č",
    ]


def test_quoted_template_words_group() -> None:
    assert build_argv("app", "'--title={T} x' y", {"T": "t"}) == ["app", "--title=t x", "y"]


def test_empty_placeholder_argument_is_dropped_but_literals_stay() -> None:
    assert build_argv("app", "${FILE} -v {MISSING_EMPTY}", {"FILE": "", "MISSING_EMPTY": ""}) \
        == ["app", "-v"]
    assert build_argv("app", "--x=${FILE}", {"FILE": ""}) == ["app", "--x="]


def test_unknown_placeholder_stays_as_written() -> None:
    assert build_argv("app", "{NOPE}", {}) == ["app", "{NOPE}"]


def test_bad_template_names_the_field() -> None:
    with pytest.raises(CommandError, match="cmdparams"):
        build_argv("app", "'unbalanced", {})
