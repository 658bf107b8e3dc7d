"""The hosted lifecycle table (``contract/states.py``) and its enforcement by the records on every change."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from corral.contract.states import LIVE_STATES, TRANSITIONS, SandboxState, allowed
from corral.errors import SandboxClosedError
from corral.hosted.database import Database
from corral.hosted.records import Records, require_state

S = SandboxState
#: The table as docs/server.md draws it, written out again: a change to the table must change this too.
EXPECTED = {
    S.CREATING: {S.RUNNING, S.STOPPING, S.STOPPED},
    S.RUNNING: {S.PAUSED, S.STOPPING, S.STOPPED},
    S.PAUSED: {S.STOPPED},  # a resume is a new sandbox, never Paused -> Running
    S.STOPPING: {S.STOPPED},
    S.STOPPED: set(),
}
PAIRS = list(itertools.product(EXPECTED, EXPECTED))


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{o.value}-{n.value}" for o, n in PAIRS])
def test_every_transition_is_allowed_or_refused_as_the_table_says(old, new):
    assert allowed(old, new) is (new in EXPECTED[old])


def test_the_table_covers_every_state_and_names_only_states():
    assert set(TRANSITIONS) == set(SandboxState)
    assert all(isinstance(target, SandboxState) for targets in TRANSITIONS.values() for target in targets)
    assert not any(allowed(state, state) for state in SandboxState)  # no transition to itself


def test_every_state_is_reachable_from_creating_and_can_reach_stopped():
    assert _path(S.CREATING, S.STOPPED) is not None
    for state in SandboxState:
        assert _path(S.CREATING, state) is not None, state
        assert state is S.STOPPED or _path(state, S.STOPPED) is not None, state
    assert not TRANSITIONS[S.STOPPED]  # the end


def test_live_states_are_the_ones_holding_host_processes():
    assert LIVE_STATES == {S.CREATING, S.RUNNING, S.STOPPING}


@pytest.fixture
def records(tmp_path):
    database = Database(tmp_path / "corral.db")
    yield Records(database)
    database.close()


_ids = itertools.count()


def _sandbox_in(records: Records, state: SandboxState) -> str:
    """A recorded sandbox brought to ``state`` through allowed transitions only."""
    sandbox_id = f"sb-{next(_ids)}"
    records.insert_sandbox(sandbox_id=sandbox_id, owner="alice", template="base", spec={}, metadata={},
                           token_hash="h", process_tag="t", expires_at=0.0, resumed_from=None)
    path = _path(S.CREATING, state)
    for step in path[1:]:
        assert records.transition(sandbox_id, step, "step", f"to {step.value}")
    return sandbox_id


@pytest.mark.parametrize(("old", "new"), PAIRS, ids=[f"{o.value}-{n.value}" for o, n in PAIRS])
def test_records_change_state_only_along_the_table_and_log_each_change(records, old, new):
    sandbox_id = _sandbox_in(records, old)
    before = records.events(sandbox_id)
    changed = records.transition(sandbox_id, new, "test", "moving")
    state = S(records.sandbox_row(sandbox_id, "alice")["state"])
    after = records.events(sandbox_id)
    if new in EXPECTED[old]:
        assert changed and state is new
        assert [(e.kind, e.state, e.message) for e in after[len(before):]] == [("test", new, "moving")]
    else:
        assert not changed and state is old
        assert after == before  # a refused change records nothing


def test_a_sandbox_that_is_not_recorded_cannot_change_state(records):
    assert records.transition("nobody", S.RUNNING, "test", "moving") is False


def test_require_state_names_the_state_and_the_snapshot_to_resume(records):
    sandbox_id = _sandbox_in(records, S.RUNNING)
    require_state(records.sandbox_row(sandbox_id, None), S.RUNNING)
    paused = _sandbox_in(records, S.PAUSED)
    with pytest.raises(SandboxClosedError, match=f"sandbox {paused} is paused; resume snapshot None"):
        require_state(records.sandbox_row(paused, None), S.RUNNING)
    stopped = _sandbox_in(records, S.STOPPED)
    with pytest.raises(SandboxClosedError, match="is stopped$"):
        require_state(records.sandbox_row(stopped, None), S.RUNNING, S.PAUSED)


def _path(start: SandboxState, goal: SandboxState) -> list[SandboxState] | None:
    """Shortest list of states from ``start`` to ``goal`` along the table (breadth first)."""
    came_from = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if state is goal:
            path = [state]
            while came_from[path[-1]] is not None:
                path.append(came_from[path[-1]])
            return path[::-1]
        for target in sorted(TRANSITIONS[state], key=lambda s: s.value):
            if target not in came_from:
                came_from[target] = state
                queue.append(target)
    return None
