"""When a failed job is tried again (run-template retry policy + the app's exit codes)."""

from __future__ import annotations

BACKOFFS = ("none", "fixed", "linear", "exponential")
# States a retry may follow; cancelled, blocked and lost jobs are never retried.
RETRYABLE_STATES = ("failed", "timed_out")


def retry_gap(backoff: str, min_gap: int, attempts: int) -> int:
    """Seconds until the next attempt after ``attempts`` attempts (as the original):
    none/fixed: the minimum gap; linear: gap x attempts; exponential: gap x 2^attempts."""
    if backoff not in BACKOFFS:
        raise ValueError(f"retry_backoff: {backoff!r} is not one of {', '.join(BACKOFFS)}")
    if backoff == "linear":
        return min_gap * attempts
    if backoff == "exponential":
        return min_gap * 2 ** attempts
    return min_gap


def may_retry(state: str, attempt: int, max_attempts: int, declared_retry: bool | None) -> bool:
    """``declared_retry``: the app's ``retry`` for this exit code, None when undeclared
    (or no exit code: a timeout, a job that did not start) — then retries are allowed."""
    if state not in RETRYABLE_STATES or attempt >= max_attempts:
        return False
    return declared_retry is not False
