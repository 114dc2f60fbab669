"""The session engine on its own: arithmetic, locking, expiry, limits, tokens, history."""

from __future__ import annotations

import math
import re
import secrets
import struct
import threading

import pytest
from conftest import FakeClock
from hypothesis import given, settings
from hypothesis import strategies as st

from remotecalc import (
    DivisionByZero,
    InvalidOperand,
    InvalidToken,
    Operator,
    OutOfRange,
    SessionNotFound,
    Step,
    StepsNotKept,
    TooManySessions,
    WatcherTooSlow,
)
from remotecalc.rules import compute
from remotecalc.stores.memory import MemoryStore

THREADS = 16
ADDS_PER_THREAD = 500


def test_concurrent_adds_on_one_session_are_all_counted() -> None:
    engine = MemoryStore()
    token = engine.create(0)
    start = threading.Barrier(THREADS)

    def add_many() -> None:
        start.wait()
        for _ in range(ADDS_PER_THREAD):
            engine.apply(token, Operator.ADD, 1)

    threads = [threading.Thread(target=add_many) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    snapshot = engine.snapshot(token)
    assert snapshot.value == THREADS * ADDS_PER_THREAD == 8000
    assert snapshot.step_count == 8000


def test_close_frees_the_session_and_the_token_is_then_not_found() -> None:
    engine = MemoryStore()
    keep = engine.create(1)
    token = engine.create(2)
    engine.apply(token, Operator.MULTIPLY, 21)
    assert len(engine) == 2
    assert engine.close(token) == (42.0, 1)
    assert len(engine) == 1
    for use in (
        lambda: engine.snapshot(token),
        lambda: engine.apply(token, Operator.ADD, 1),
        lambda: engine.close(token),
        lambda: engine.watch(token),
    ):
        with pytest.raises(SessionNotFound):
            use()
    assert engine.snapshot(keep).value == 1


def test_an_idle_session_expires_after_one_hour_by_default() -> None:
    clock = FakeClock()
    engine = MemoryStore(clock=clock)
    token = engine.create(5)
    clock.advance(3600)
    assert engine.snapshot(token).value == 5  # exactly one hour idle is not yet too long
    clock.advance(1)
    with pytest.raises(SessionNotFound, match="expired"):
        engine.snapshot(token)
    assert len(engine) == 0


def test_using_a_session_resets_its_idle_time() -> None:
    clock = FakeClock()
    engine = MemoryStore(clock=clock)
    token = engine.create(0)
    clock.advance(3000)
    engine.apply(token, Operator.ADD, 1)
    clock.advance(3000)
    assert engine.snapshot(token).value == 1


def test_the_idle_timeout_is_configurable_and_expire_idle_sweeps() -> None:
    clock = FakeClock()
    engine = MemoryStore(idle_timeout=10, clock=clock)
    old = engine.create(0)
    clock.advance(6)
    young = engine.create(0)
    clock.advance(5)
    assert engine.expire_idle() == 1
    assert len(engine) == 1
    with pytest.raises(SessionNotFound):
        engine.apply(old, Operator.ADD, 1)
    assert engine.apply(young, Operator.ADD, 1).result == 1


def test_the_session_cap_refuses_more_until_one_closes_or_expires() -> None:
    clock = FakeClock()
    engine = MemoryStore(max_sessions=2, idle_timeout=60, clock=clock)
    first = engine.create(0)
    engine.create(0)
    with pytest.raises(TooManySessions):
        engine.create(0)
    assert len(engine) == 2
    engine.close(first)
    third = engine.create(0)
    with pytest.raises(TooManySessions):
        engine.create(0)
    clock.advance(61)  # every session is now idle too long: creating sweeps them out
    engine.create(0)
    assert len(engine) == 1
    with pytest.raises(SessionNotFound):
        engine.snapshot(third)


def test_history_keeps_only_the_most_recent_steps() -> None:
    engine = MemoryStore(history_limit=3)
    token = engine.create(0)
    for operand in range(1, 6):
        engine.apply(token, Operator.ADD, operand)
    snapshot = engine.snapshot(token)
    assert snapshot.step_count == 5
    assert [step.number for step in snapshot.history] == [3, 4, 5]
    assert [step.operand for step in snapshot.history] == [3, 4, 5]
    assert snapshot.history[-1].result == 15
    engine.apply_many(token, [(Operator.ADD, 1)] * 10)
    assert [step.number for step in engine.snapshot(token).history] == [13, 14, 15]


def test_tokens_are_secrets_of_at_least_128_bits_and_all_distinct(monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[int | None] = []
    real = secrets.token_urlsafe

    def recording(nbytes: int | None = None) -> str:
        requested.append(nbytes)
        return real(nbytes)

    monkeypatch.setattr(secrets, "token_urlsafe", recording)
    engine = MemoryStore()
    tokens = [engine.create(0) for _ in range(2000)]
    assert len(requested) == 2000
    assert all(nbytes is not None and nbytes >= 16 for nbytes in requested)
    assert len(set(tokens)) == 2000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22,}", token) for token in tokens)


@pytest.mark.parametrize(
    ("operator", "operand", "error"),
    [
        (Operator.DIVIDE, 0.0, DivisionByZero),
        (Operator.ADD, math.nan, InvalidOperand),
        (Operator.SUBTRACT, math.inf, InvalidOperand),
        (Operator.MULTIPLY, 1e308, OutOfRange),
        (0, 1.0, InvalidOperand),
        (9, 1.0, InvalidOperand),
    ],
)
def test_a_failed_operation_leaves_the_session_exactly_as_it_was(operator: int, operand: float, error: type) -> None:
    engine = MemoryStore()
    token = engine.create(10)
    engine.apply(token, Operator.ADD, 2)
    before = engine.snapshot(token)
    with pytest.raises(error):
        engine.apply(token, operator, operand)
    with pytest.raises(error):
        engine.apply_many(token, [(Operator.ADD, 1), (operator, operand)])
    assert engine.snapshot(token) == before


def test_a_result_beyond_the_limit_is_out_of_range_and_changes_nothing() -> None:
    engine = MemoryStore()
    token = engine.create(3e38)
    with pytest.raises(OutOfRange, match="beyond the limit"):
        engine.apply(token, Operator.MULTIPLY, 10, limit=3.4028234663852886e38)
    assert engine.snapshot(token).value == 3e38


def test_bad_tokens_are_invalid_not_missing() -> None:
    engine = MemoryStore()
    for token in ("", "short", "!" * 22, "a" * 100_000):
        with pytest.raises(InvalidToken):
            engine.snapshot(token)
    with pytest.raises(SessionNotFound):
        engine.snapshot("A" * 22)


def test_a_locked_session_does_not_hold_up_another_session() -> None:
    engine = MemoryStore()
    busy = engine.create(0)
    free = engine.create(0)
    busy_done = threading.Event()
    free_done = threading.Event()

    def use(token: str, done: threading.Event) -> None:
        engine.apply(token, Operator.ADD, 1)
        done.set()

    lock = engine._sessions[busy].lock
    with lock:
        blocked = threading.Thread(target=use, args=(busy, busy_done))
        blocked.start()
        threading.Thread(target=use, args=(free, free_done)).start()
        assert free_done.wait(timeout=10), "a session waited for another session's lock"
        assert not busy_done.is_set(), "the engine applied an operation without its session's lock"
    assert busy_done.wait(timeout=10)
    blocked.join(timeout=10)
    assert engine.snapshot(busy).value == 1
    assert engine.snapshot(free).value == 1


def test_watch_sees_every_change_then_closed() -> None:
    engine = MemoryStore()
    token = engine.create(1)
    watcher = engine.watch(token)
    engine.apply(token, Operator.ADD, 1)
    engine.apply_many(token, [(Operator.MULTIPLY, 3), (Operator.SUBTRACT, 1)])
    engine.close(token)
    updates = list(watcher)
    assert [(u.value, u.step_count, len(u.steps), u.closed) for u in updates] == [
        (1, 0, 0, False),
        (2, 1, 1, False),
        (5, 3, 2, False),
        (5, 3, 0, True),
    ]


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        MemoryStore(max_sessions=0)
    with pytest.raises(ValueError):
        MemoryStore(idle_timeout=0)


@pytest.mark.parametrize(
    ("operations", "index"),
    [
        ([(Operator.MULTIPLY, 10), (Operator.DIVIDE, 100)], 0),
        ([(Operator.ADD, 1), (Operator.MULTIPLY, 10), (Operator.MULTIPLY, 0)], 1),
        ([(Operator.ADD, 0), (Operator.MULTIPLY, -10), (Operator.ADD, math.inf)], 1),
    ],
)
def test_a_batch_fails_at_the_first_step_that_overflows_even_if_later_steps_would_not(
    operations: list[tuple[int, float]], index: int
) -> None:
    engine = MemoryStore()
    token = engine.create(1e308)
    with pytest.raises(OutOfRange) as raised:
        engine.apply_many(token, operations)
    assert raised.value.index == index
    assert raised.value.message.startswith(f"operation {index}: ")
    assert engine.snapshot(token) == (token, 1e308, 0, (), 1e308)


def test_a_watcher_that_falls_too_far_behind_is_ended() -> None:
    engine = MemoryStore(watch_backlog=3)
    token = engine.create(0)
    watcher = engine.watch(token)
    for _ in range(5):
        engine.apply(token, Operator.ADD, 1)
    received = []
    with pytest.raises(WatcherTooSlow, match="3 steps behind"):
        for update in watcher:
            received.append(update.value)
    assert received == []  # told on its very next read, not after reading the stale backlog
    assert engine.apply(token, Operator.ADD, 1).result == 6


_OPERATION = st.tuples(
    st.sampled_from([int(operator) for operator in Operator]),
    st.floats(min_value=-4.0, max_value=4.0, allow_nan=False).filter(lambda operand: abs(operand) >= 0.25),
)
# Operands of at least 1/4 in magnitude keep 144 steps far from overflow. A change is one apply or a
# batch, possibly empty, possibly longer than the history.
_CHANGE = st.one_of(_OPERATION, st.lists(_OPERATION, max_size=12))


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(min_value=1, max_value=5), changes=st.lists(_CHANGE, max_size=12), data=st.data())
def test_history_and_watch_show_exactly_the_steps_of_a_plain_list(
    limit: int, changes: list[tuple[int, float] | list[tuple[int, float]]], data: st.DataObject
) -> None:
    # The history is kept as columns and made into Steps when read: it must read as the plain list would.
    engine = MemoryStore(history_limit=limit, watch_backlog=10_000)
    token = engine.create(1.0)
    watcher = engine.watch(token)
    updates = iter(watcher)
    assert next(updates).steps == ()
    steps: list[Step] = []
    value = 1.0
    for change in changes:
        operations = [change] if isinstance(change, tuple) else change
        before = len(steps)
        for operator, operand in operations:
            value = compute(value, operator, operand)
            steps.append(Step(len(steps) + 1, Operator(operator), operand, value))
        if isinstance(change, tuple):
            assert engine.apply(token, *change) == steps[-1]
        else:
            assert engine.apply_many(token, change) == (value, len(steps))
        published = steps[before:][-limit:]
        assert published == [] or next(updates).steps == tuple(published)
    snapshot = engine.snapshot(token)
    assert snapshot.history == tuple(steps[-limit:])
    assert [_bits(step) for step in snapshot.history] == [_bits(step) for step in steps[-limit:]]
    after = data.draw(st.integers(min_value=max(0, len(steps) - limit), max_value=len(steps)), label="after_step")
    resumed = engine.watch(token, after)
    # after_step 0 means from now, without steps.
    assert next(iter(resumed)).steps == (tuple(steps[after:]) if after else ())
    if len(steps) > limit + 1:
        with pytest.raises(StepsNotKept):
            engine.watch(token, len(steps) - limit - 1)
    watcher.cancel()
    resumed.cancel()


def _bits(step: Step) -> tuple[int, int, bytes, bytes]:
    return step.number, step.operator, struct.pack("<d", step.operand), struct.pack("<d", step.result)


def test_the_history_does_not_change_when_the_caller_reuses_its_operations_list() -> None:
    # The history keeps a batch's lists rather than Steps: it must not share the caller's list.
    engine = MemoryStore(history_limit=10)
    token = engine.create(1.0)
    operations = [(int(Operator.ADD), 1.0), (int(Operator.MULTIPLY), 3.0)]
    engine.apply_many(token, operations)
    operations[0] = (int(Operator.SUBTRACT), 100.0)
    operations.append((int(Operator.DIVIDE), 2.0))
    engine.apply(token, Operator.ADD, 0.5)
    assert engine.snapshot(token).history == (
        Step(1, Operator.ADD, 1.0, 2.0),
        Step(2, Operator.MULTIPLY, 3.0, 6.0),
        Step(3, Operator.ADD, 0.5, 6.5),
    )
