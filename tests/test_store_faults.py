"""A frozen Redis and a full Redis: calls end fast and say which, reads go on, a refused change is settled."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from contracts import V1Calls, reason_of, rpc_error
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis_servers import RedisServer

import remotecalc
from remotecalc import OutcomeUnknown, start_server
from remotecalc.client import uuid7
from remotecalc.context import Call
from remotecalc.errors import StoreFull
from remotecalc.stores.redis import DEFAULT_TIMEOUT, RedisStore
from remotecalc.v1 import calculator_pb2 as pb

# More calls at once than the server has threads (32), so that a call waiting on Redis for good would
# leave none for health.
CALLS = 40
# Only a call that waits on a frozen Redis for good crosses this; the figures are printed.
HANG = 10.0
FULL_MB = 2
FULL = ("--maxmemory", f"{FULL_MB}mb", "--maxmemory-policy", "noeviction")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, that it freezes or fills."""
    server = RedisServer(tmp_path, extra=FULL)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_frozen_redis_fails_calls_within_about_a_second_and_health_still_answers(own_redis: RedisServer) -> None:
    with (
        start_server(port=0, store=own_redis.url) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        calls = V1Calls(channel)
        token = calls.create(1)
        watch = calls.stub.WatchSession(pb.WatchSessionRequest(token=token), timeout=60)
        updates = iter(watch)
        assert next(updates).value == 1
        outcomes: list[tuple[float, grpc.StatusCode, str | None]] = []

        def apply() -> None:
            started = time.monotonic()
            error = rpc_error(lambda: calls.apply(token, "+", 1))
            outcomes.append((time.monotonic() - started, error.code(), reason_of(error)))

        own_redis.freeze()
        try:
            frozen = time.monotonic()
            threads = [threading.Thread(target=apply) for _ in range(CALLS)]
            for thread in threads:
                thread.start()
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=HANG)
            health_after = time.monotonic() - frozen
            watch_error = rpc_error(lambda: next(updates))
            watch_after = time.monotonic() - frozen
            for thread in threads:
                thread.join(HANG * 2)
        finally:
            own_redis.thaw()
        slowest = max(seconds for seconds, _, _ in outcomes)
        print(
            f"Redis frozen (socket timeout {DEFAULT_TIMEOUT:g} s): {CALLS} Applies failed within"
            f" {min(seconds for seconds, _, _ in outcomes):.2f}-{slowest:.2f} s; health answered after"
            f" {health_after:.2f} s; the Watch ended after {watch_after:.2f} s"
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert len(outcomes) == CALLS
        assert {(code, reason) for _, code, reason in outcomes} == {(grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")}
        assert slowest < HANG
        assert watch_error.code() is grpc.StatusCode.UNAVAILABLE
        assert reason_of(watch_error) == "STORE_UNAVAILABLE"
        # Thawed, Redis answers again; the frozen Applies may or may not have been made (UNAVAILABLE said so).
        value, count, _ = calls.read(token)
        assert calls.apply(token, "+", 1) == value + 1
        print(f"of the {CALLS} Applies sent while Redis was frozen, {count} were made once it thawed")


def _fill(url: str) -> None:
    """Twice maxmemory written with the limit lifted, then the limit back: Redis is full, now and after a restart."""
    client = redis.Redis.from_url(url)
    client.config_set("maxmemory", "0")
    for index in range(2 * FULL_MB * 50):
        client.set(f"filler:{index}", b"x" * 20_000)
    client.config_set("maxmemory", f"{FULL_MB}mb")
    with pytest.raises(redis.OutOfMemoryError):
        client.set("one more", "x")
    client.close()


def test_a_full_redis_answers_reads_and_refuses_changes_as_not_made(own_redis: RedisServer) -> None:
    with (
        start_server(port=0, store=own_redis.url) as server,
        remotecalc.connect(server) as client,
    ):
        session = client.create(5)
        session.add(1)
        unknown: OutcomeUnknown | None = None
        store = RedisStore.from_url(own_redis.url)
        other = store.create(1)
        request_id = uuid7().hex
        applied = [store.apply(other, 1, 1.0), store.apply(other, 1, 1.0, call=Call(request_id=request_id))]
        _fill(own_redis.url)
        # A request id already applied still gets its stored reply, and a Watch resumes after a step.
        assert store.apply(other, 1, 1.0, call=Call(request_id=request_id)) == applied[1]
        feed = store.watch(other, after_step=1)
        try:
            assert next(iter(feed)).steps == (applied[1],)
        finally:
            feed.cancel()
            store.shutdown()
        commands = redis.Redis.from_url(own_redis.url)
        scripts_before = commands.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
        with pytest.raises(StoreFull) as refused:
            session.add(1)
        scripts_run = commands.info("commandstats")["cmdstat_evalsha"]["calls"] - scripts_before
        assert refused.value.code_name == "RESOURCE_EXHAUSTED"
        assert refused.value.reason == "STORE_FULL"
        assert "full" in refused.value.message and "nothing was changed" in refused.value.message
        assert not isinstance(refused.value, OutcomeUnknown)
        # A definite answer: the client sent the change once, and did not retry it.
        assert scripts_run == 1
        with pytest.raises(StoreFull):
            client.create(1)
        # Reads answer while Redis is full: GetSession, and a Watch's first update.
        state = session.state()
        assert (state.value, state.step_count) == (6, 1)
        with session.watch() as watch:
            assert next(iter(watch)).value == 6
        # A change whose outcome was unknown (Redis down) and that a full Redis then refused is settled.
        own_redis.kill()
        try:
            session.add(10)
        except OutcomeUnknown as error:
            unknown = error
        assert unknown is not None and unknown.reason == "STORE_UNAVAILABLE"
        own_redis.start()  # its AOF holds the filler: full again
        with pytest.raises(StoreFull):
            unknown.resolve()
        assert session.state().step_count == 1
        # Closing a session still works when Redis is full: it frees room.
        assert session.close() == 6


def test_on_the_aio_core_calls_waiting_on_a_frozen_redis_never_hold_its_event_loop(own_redis: RedisServer) -> None:
    with (
        start_server(port=0, store=own_redis.url, core="aio") as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        calls = V1Calls(channel)
        token = calls.create(1)
        codes: list[grpc.StatusCode] = []
        own_redis.freeze()
        try:
            threads = [
                threading.Thread(target=lambda: codes.append(rpc_error(lambda: calls.apply(token, "+", 1)).code()))
                for _ in range(10)
            ]
            for thread in threads:
                thread.start()
            # Ten calls each wait up to a second on Redis; on the loop itself they would take ten seconds in turn,
            # and health, served by the same loop, would wait behind them.
            started = time.monotonic()
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=HANG)
            answered = time.monotonic() - started
            for thread in threads:
                thread.join(HANG * 2)
        finally:
            own_redis.thaw()
        print(f"aio core, Redis frozen: health answered in {answered:.3f} s beside 10 waiting Applies")
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert answered < DEFAULT_TIMEOUT  # a loop waiting with even one of the calls would hold health that long
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 10
        assert calls.apply(token, "+", 1) == 2
