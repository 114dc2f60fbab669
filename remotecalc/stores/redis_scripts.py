"""What the Redis store keeps and how it commits: each session's keys, the Lua scripts, the packed steps.

A session's keys share the Cluster hash tag {token}: its state hash (n step count, v value, i initial
value, o owner) and its stream, whose entries are both its history and its Watch feed.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from typing import Any

from ..model import OPERATORS, Step

try:
    from redis.exceptions import NoScriptError
except ImportError:  # pragma: no cover - the Redis store says so as it opens
    NoScriptError = Exception  # type: ignore[assignment,misc]

__all__ = [
    "COMMIT",
    "CREATE",
    "READ",
    "Script",
    "entry_steps",
    "fields",
    "keys",
    "owner_part",
    "pack",
    "step_of",
    "unpack",
    "value_and_count",
]

# KEYS: state hash, watch stream[, reply of this request id].
# ARGV: expected step count, kind (a change / c close), new step count, new value, TTL ms, the
# oldest stream id the history still needs, reply, reply TTL ms, the change's steps (packed), caller.
# Another caller's session is gone to this one, before any request id is looked up.
COMMIT = """
local state = redis.call('HMGET', KEYS[1], 'n', 'v', 'o')
if state[1] and (state[3] or '') ~= ARGV[10] then return {'gone'} end
if #KEYS == 3 then
  local done = redis.call('GET', KEYS[3])
  if done then return {'dup', done} end
end
if not state[1] then return {'gone'} end
if state[1] ~= ARGV[1] then return {'moved', state[1], state[2]} end
if ARGV[2] == 'c' then
  redis.call('DEL', KEYS[1])
  redis.call('XADD', KEYS[2], ARGV[3] .. '-1', 'p', ARGV[1], 'v', ARGV[4], 'c', '1')
else
  redis.call('HSET', KEYS[1], 'n', ARGV[3], 'v', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  if ARGV[9] ~= '' then
    redis.call('XADD', KEYS[2], 'MINID', ARGV[6], ARGV[3] .. '-0', 'p', ARGV[1], 'v', ARGV[4], 's', ARGV[9])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if #KEYS == 3 then redis.call('SET', KEYS[3], ARGV[7], 'PX', ARGV[8]) end
return {'ok'}
"""

# KEYS: state hash. ARGV: value, TTL ms, caller.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'n', '0', 'v', ARGV[1], 'i', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'o', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


# KEYS: state hash, watch stream. ARGV: the first stream id wanted, '' for none.
# A script, not MULTI: Redis refuses to queue commands in a MULTI when it is full, a script's reads it runs.
READ = """
local state = redis.call('HMGET', KEYS[1], 'n', 'v', 'i', 'o')
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local entries = {}
if ARGV[1] ~= '' then entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+') end
return {state, newest, entries}
"""


def keys(token: str) -> tuple[str, str]:
    """The state hash and the watch stream of a session: one hash tag, one Cluster slot."""
    return f"rc:{{{token}}}:s", f"rc:{{{token}}}:w"


def owner_part(owner: str) -> str:
    """A caller's part of a request key: hex, so no name can reach into another key or hash tag."""
    return f":{owner.encode().hex()}" if owner else ""


def pack(operators: Sequence[int], operands: Sequence[float], results: Sequence[float]) -> str:
    """A change's steps in one string: operator bytes, then operands and results as exact doubles."""
    size = len(results)
    raw = bytes(operators) + struct.pack(f"<{size}d", *operands) + struct.pack(f"<{size}d", *results)
    return base64.b64encode(raw).decode("ascii")


def unpack(text: str, last: int) -> list[Step]:
    """The steps pack packed, numbered so that the last one is last."""
    raw = base64.b64decode(text)
    size = len(raw) // 17
    operands = struct.unpack_from(f"<{size}d", raw, size)
    results = struct.unpack_from(f"<{size}d", raw, 9 * size)
    operators = map(OPERATORS.__getitem__, raw[:size])
    return list(map(Step._make, zip(range(last - size + 1, last + 1), operators, operands, results, strict=True)))


def entry_steps(entry_id: str, fields: dict[str, str]) -> list[Step]:
    text = fields.get("s")
    return unpack(text, int(entry_id.partition("-")[0])) if text else []


def step_of(text: str) -> Step:
    number, operator, operand, result = text.split(" ")
    return Step(int(number), OPERATORS[int(operator)], float(operand), float(result))


class Script:
    """A Lua script run by its SHA1, sent whole to a Redis that has not cached it (new, or restarted).

    Not redis-py's Script: on a Cluster it loads a script on every master at once, so with one master
    down no script new to the others could run on them. NoScriptError means the script did not run.
    """

    def __init__(self, client: Any, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, *, keys: Sequence[str], args: Sequence[str]) -> Any:
        try:
            return self._client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return self._client.eval(self._source, len(keys), *keys, *args)


def fields(raw: dict[str, str] | list[str]) -> dict[str, str]:
    """A stream entry's fields as a dict: a Cluster pipeline leaves them a flat list."""
    if isinstance(raw, dict):
        return raw
    return dict(zip(raw[::2], raw[1::2], strict=True))


def value_and_count(text: str) -> tuple[float, int]:
    value, count = text.split(" ")
    return float(value), int(count)
