"""The shared vocabulary of a job's life."""

from __future__ import annotations

import itertools

from multiflexi.states import FINAL_STATES, HELD_STATES, JOB_STATES, QUEUED_STATES, STAGE


def test_stages_follow_the_one_order_of_the_states() -> None:
    """Events about a job are dropped when they come later than one of a further stage
    (daemon._stale): queued < claimed < running < final, from JOB_STATES' order."""
    assert list(STAGE) == list(JOB_STATES)
    assert all(STAGE[a] <= STAGE[b] for a, b in itertools.pairwise(JOB_STATES))
    assert {STAGE[s] for s in QUEUED_STATES} == {0}
    assert [STAGE[s] for s in HELD_STATES] == [1, 2]
    assert {STAGE[s] for s in FINAL_STATES} == {3}
