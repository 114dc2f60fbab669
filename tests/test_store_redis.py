"""The Redis store against a real redis-server: the same answers as memory, shared sessions, Watch resume."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis
from conftest import FakeClock
from contracts import V1Calls, reason_of, rpc_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_servers import RedisClusterServers

from remotecalc import RunningServer, start_server
from remotecalc.context import Call
from remotecalc.errors import RemoteCalcError, SessionNotFound, WatcherTooSlow
from remotecalc.rules import FLOAT32_MAX
from remotecalc.stores.memory import MemoryStore
from remotecalc.stores.redis import RedisStore
from remotecalc.v1 import calculator_pb2 as pb

HISTORY = 3

# Floats where the two stores could part: signed zeros, the extremes, subnormals, non-finite ones.
floats = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.1, 1e308, -1e308, 5e-324, -5e-324, 3.4e38, 1e-300, math.nan, math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
)
operators = st.integers(min_value=0, max_value=5)
limits = st.sampled_from([math.inf, FLOAT32_MAX])
request_ids = st.one_of(st.just(""), st.integers(min_value=0, max_value=3).map(lambda n: uuid.UUID(int=n + 1).hex))
actions = st.one_of(
    st.tuples(st.just("apply"), operators, floats, limits, request_ids),
    st.tuples(st.just("batch"), st.lists(st.tuples(operators, floats), max_size=6), request_ids),
    st.tuples(st.just("close"), limits, request_ids),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("create"), floats, request_ids),
)


def _bits(value: Any) -> Any:
    """value with every float replaced by its bit pattern, so that -0.0 != 0.0 and NaN == NaN."""
    if isinstance(value, float):
        return struct.pack("<d", value).hex()
    if isinstance(value, tuple | list):
        return tuple(_bits(item) for item in value)
    return value


def _outcome(store: Any, tokens: list[str], action: tuple[Any, ...]) -> Any:
    """What one action gives on a store: its result, bit for bit, or its error's class, message and index."""
    kind, *args = action
    token = tokens[-1] if tokens else ""
    try:
        if kind == "apply":
            operator, operand, limit, request_id = args
            return _bits(store.apply(token, operator, operand, limit=limit, call=Call(request_id=request_id)))
        if kind == "batch":
            operations, request_id = args
            return _bits(store.apply_many(token, operations, call=Call(request_id=request_id)))
        if kind == "close":
            limit, request_id = args
            return _bits(store.close(token, limit=limit, call=Call(request_id=request_id)))
        if kind == "snapshot":
            snapshot = store.snapshot(token)
            return _bits((snapshot.value, snapshot.step_count, snapshot.history, snapshot.initial_value))
        value, request_id = args
        tokens.append(store.create(value, call=Call(request_id=request_id)))
        return "created"
    except RemoteCalcError as error:
        return (type(error).__name__, error.message, error.index)


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster on loopback, for this module's tests."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module", params=["single", "cluster"])
def redis_store(request: pytest.FixtureRequest) -> Iterator[RedisStore]:
    """A Redis store keeping HISTORY steps like its in-memory twin: on one redis-server, then on a Cluster."""
    if request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url
    else:
        url = request.getfixturevalue("redis_url")
    store = RedisStore.from_url(url, history_limit=HISTORY)
    yield store
    store.shutdown()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=floats, script=st.lists(actions, max_size=12))
def test_both_stores_give_bit_identical_values_steps_and_errors(
    redis_store: RedisStore, initial: float, script: list[tuple[Any, ...]]
) -> None:
    memory = MemoryStore(history_limit=HISTORY)
    # Request ids are scoped by session; each example's sessions are new, so ids may repeat across examples.
    memory_tokens: list[str] = []
    redis_tokens: list[str] = []
    created = _outcome(memory, memory_tokens, ("create", initial, ""))
    assert _outcome(redis_store, redis_tokens, ("create", initial, "")) == created
    if created != "created":
        return
    for action in script:
        if action[0] == "create":
            # A create's request id is not scoped by a session: make it this example's own.
            action = ("create", action[1], uuid.uuid4().hex if action[2] else "")
        expected = _outcome(memory, memory_tokens, action)
        assert _outcome(redis_store, redis_tokens, action) == expected, action
    assert _outcome(redis_store, redis_tokens, ("snapshot",)) == _outcome(memory, memory_tokens, ("snapshot",))


def test_a_batch_beyond_the_history_keeps_the_last_steps_and_a_watch_resumes_from_them(
    redis_store: RedisStore,
) -> None:
    token = redis_store.create(0)
    assert redis_store.apply_many(token, [(1, 1.0)] * 10) == (10.0, 10)
    assert [step.number for step in redis_store.snapshot(token).history] == [8, 9, 10]
    feed = redis_store.watch(token, after_step=8)
    try:
        first = next(iter(feed))
    finally:
        feed.cancel()
    assert [step.number for step in first.steps] == [9, 10]
    with pytest.raises(RemoteCalcError, match="steps no longer kept"):
        redis_store.watch(token, after_step=5)


def test_every_key_of_a_session_shares_one_hash_tag_and_expires_with_the_idle_timeout(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, idle_timeout=90)
    token = store.create(1)
    store.apply(token, 1, 2.0, call=Call(request_id=uuid.uuid4().hex))
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = sorted(client.scan_iter(match=f"*{token}*"))
    assert len(keys) == 3 and all(f"{{{token}}}" in key for key in keys), keys
    session_keys = [key for key in keys if ":q:" not in key]
    assert all(80_000 < client.pttl(key) <= 90_000 for key in session_keys)
    # The stored reply of a request id lives as long as a retry may come: the window and the skew.
    assert all(client.pttl(key) > 90_000 for key in keys if ":q:" in key)
    store.shutdown()


def test_a_closed_session_keeps_only_its_stream_and_that_for_the_request_window(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, idle_timeout=3600)
    token = store.create(1)
    store.apply(token, 1, 2.0)
    assert store.close(token) == (3.0, 1)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = sorted(client.scan_iter(match=f"*{token}*"))
    assert keys == [f"rc:{{{token}}}:w"]
    # Long enough for its watchers to read the end, far less than the idle timeout of an hour.
    assert 0 < client.pttl(keys[0]) <= 130_000
    store.shutdown()


def _watch(address: str, token: str, after_step: int = 0) -> Any:
    channel = grpc.insecure_channel(address)
    call = pb_stub(channel).WatchSession(pb.WatchSessionRequest(token=token, after_step=after_step), timeout=30)
    return channel, call


def pb_stub(channel: grpc.Channel) -> Any:
    from remotecalc.v1 import calculator_pb2_grpc

    return calculator_pb2_grpc.CalculatorStub(channel)


@pytest.fixture
def two_replicas(redis_url: str) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two servers on one Redis, as two replicas behind a load balancer would be."""
    with (
        start_server(port=0, clock=FakeClock(), store=redis_url) as one,
        start_server(port=0, clock=FakeClock(), store=redis_url, core="aio") as two,
    ):
        yield one, two


def test_a_session_changed_through_one_replica_is_watched_through_another_in_order_and_resumed(
    two_replicas: tuple[RunningServer, RunningServer],
) -> None:
    one, two = two_replicas
    with grpc.insecure_channel(one.address) as channel:
        calls = V1Calls(channel)
        token = calls.create(0)
        watch_channel, watch = _watch(two.address, token)
        updates = iter(watch)
        assert next(updates).step_count == 0
        for _ in range(20):
            calls.apply(token, "+", 1)
        calls.stub.ApplyBatch(
            pb.ApplyBatchRequest(token=token, operations=[pb.Operation(operator=pb.OPERATOR_ADD, operand=1)] * 5),
            timeout=10,
        )
        seen: list[int] = []
        while len(seen) < 25:
            seen.extend(step.number for step in next(updates).steps)
        watch.cancel()
        watch_channel.close()
        assert seen == list(range(1, 26))
        # Changes made while nobody watched come first on a watch that resumes after the last step seen.
        for _ in range(7):
            calls.apply(token, "*", 1)
        watch_channel, resumed = _watch(two.address, token, after_step=seen[-1])
        first = next(iter(resumed))
        resumed.cancel()
        watch_channel.close()
        assert [step.number for step in first.steps] == list(range(26, 33))
        assert (first.step_count, first.value) == (32, 25.0)


@pytest.mark.parametrize("store_server", ["memory", "redis"], indirect=True)
def test_after_step_resumes_or_says_plainly_why_not(store_server: RunningServer) -> None:
    with grpc.insecure_channel(store_server.address) as channel:
        calls = V1Calls(channel)
        token = calls.create(1)
        for operand in (2, 3, 4):
            calls.apply(token, "*", operand)
        watch_channel, watch = _watch(store_server.address, token, after_step=1)
        first = next(iter(watch))
        watch.cancel()
        watch_channel.close()
        assert [(step.number, step.result) for step in first.steps] == [(2, 6.0), (3, 24.0)]
        watch_channel, ahead = _watch(store_server.address, token, after_step=9)
        error = rpc_error(lambda: next(iter(ahead)))
        watch_channel.close()
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "ahead" in (error.details() or "")
        ops = [pb.Operation(operator=pb.OPERATOR_ADD, operand=1)] * 1100
        calls.stub.ApplyBatch(pb.ApplyBatchRequest(token=token, operations=ops), timeout=10)
        watch_channel, lost = _watch(store_server.address, token, after_step=2)
        error = rpc_error(lambda: next(iter(lost)))
        watch_channel.close()
        assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(error) == "STEPS_NOT_KEPT"
        assert "steps no longer kept" in (error.details() or "")


def test_without_redis_py_the_redis_store_says_how_to_install_it(redis_url: str) -> None:
    program = (
        "import sys; sys.modules['redis'] = None\n"
        "from remotecalc import start_server\n"
        f"start_server(port=0, store={redis_url!r})\n"
    )
    ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert ran.returncode != 0
    assert "pip install 'remotecalc[redis]'" in ran.stderr


def test_a_server_on_a_redis_cluster_spreads_sessions_over_the_masters_and_serves_them(
    redis_cluster: RedisClusterServers,
) -> None:
    with (
        start_server(port=0, clock=FakeClock(), store=redis_cluster.url) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        calls = V1Calls(channel)
        tokens = [calls.create(index) for index in range(24)]
        for index, token in enumerate(tokens):
            assert calls.apply(token, "*", 2) == 2 * index
        watch_channel, watch = _watch(server.address, tokens[5], after_step=0)
        updates = iter(watch)
        assert next(updates).value == 10
        calls.apply(tokens[5], "+", 1)
        assert [step.result for step in next(updates).steps] == [11.0]
        watch.cancel()
        watch_channel.close()
        assert calls.close(tokens[5]) == 11
    sizes = [redis.Redis(port=node.port).dbsize() for node in redis_cluster.nodes]
    assert all(size > 0 for size in sizes), sizes


def test_a_redis_watcher_that_fell_behind_the_kept_steps_ends_too_slow_rather_than_skip(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, history_limit=3)
    token = store.create(0)
    feed = store.watch(token)
    updates = iter(feed)
    try:
        assert next(updates).step_count == 0
        for _ in range(5):
            store.apply(token, 1, 1.0)  # the stream now keeps steps 3 to 5 only
        with pytest.raises(WatcherTooSlow):
            next(updates)
    finally:
        feed.cancel()
        store.shutdown()


def test_a_redis_watch_ends_closed_when_the_session_expires(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, idle_timeout=0.3, block=0.05)
    token = store.create(0)
    store.apply(token, 1, 4.0)
    feed = store.watch(token)
    try:
        # Blocks until Redis expires the session's keys, then ends with a closed update.
        assert [(update.value, update.step_count, update.closed) for update in feed] == [(4, 1, False), (4, 1, True)]
    finally:
        feed.cancel()
        store.shutdown()
    with pytest.raises(SessionNotFound):
        store.snapshot(token)


def test_concurrent_changes_through_two_replicas_to_one_session_are_all_applied_once(
    two_replicas: tuple[RunningServer, RunningServer],
) -> None:
    one, two = two_replicas
    with grpc.insecure_channel(one.address) as channel:
        token = V1Calls(channel).create(0)
    errors: list[BaseException] = []

    def add(address: str, times: int) -> None:
        try:
            with grpc.insecure_channel(address) as channel:
                calls = V1Calls(channel)
                for _ in range(times):
                    calls.apply(token, "+", 1)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=add, args=(server.address, 40)) for server in (one, two) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    with grpc.insecure_channel(two.address) as channel:
        value, count, history = V1Calls(channel).read(token)
    # Every race lost on the step count was re-read and recomputed: nothing lost, nothing doubled.
    assert (value, count) == (240, 240)
    assert [step[0] for step in history] == list(range(1, 241))
    assert [step[3] for step in history] == [float(n) for n in range(1, 241)]


def test_start_server_takes_a_store_object(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    with start_server(port=0, store=store) as server, grpc.insecure_channel(server.address) as channel:
        assert server.engine is store
        calls = V1Calls(channel)
        token = calls.create(1.5)
        assert store.snapshot(token).value == 1.5
