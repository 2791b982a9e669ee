from __future__ import annotations

import pytest

from multiflexid.domain.retry import may_retry, retry_gap


@pytest.mark.parametrize(("backoff", "attempts", "gap"), [
    ("none", 1, 30), ("none", 4, 30),
    ("fixed", 1, 30), ("fixed", 3, 30),
    ("linear", 1, 30), ("linear", 2, 60), ("linear", 3, 90),
    ("exponential", 1, 60), ("exponential", 2, 120), ("exponential", 3, 240),
])
def test_gap_grows_as_the_backoff_says(backoff: str, attempts: int, gap: int) -> None:
    assert retry_gap(backoff, 30, attempts) == gap


def test_unknown_backoff_names_the_field() -> None:
    with pytest.raises(ValueError, match="retry_backoff: 'random'"):
        retry_gap("random", 30, 1)


def test_retry_rules() -> None:
    assert may_retry("failed", 1, 3, None)  # undeclared exit code: allowed
    assert may_retry("failed", 2, 3, True)
    assert not may_retry("failed", 1, 3, False)  # declared retry: false -> never
    assert not may_retry("failed", 3, 3, True)  # attempts used up
    assert may_retry("timed_out", 1, 2, None)
    for state in ("cancelled", "blocked", "lost", "succeeded"):
        assert not may_retry(state, 1, 5, True)
