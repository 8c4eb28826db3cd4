"""One key's budget shared by every replica, in Redis (SHIM_REDIS_URL): each upstream call of any replica runs
one script that, on Redis's own clock, reserves the key's next free slot (capacity per window, even spacing,
any pause) and says when that slot is, or that none is free yet; a send holds its slot until a span after its
answer, which a second script, in the background, tells Redis (the upstream counted the send somewhere in
between, so no replica's delays can crowd a second of the upstream's); upstream 429s pause the key for all.
Keys hold the provider and the credential hash, never a key. Redis unreachable: the process's own window goes
on alone (polls of paid tasks must not stop; a submit needs a job record first, so none goes out without
Redis)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..redis_link import LinkDown, RedisLink
from .window import Send, SlidingWindow

#: KEYS: state hash (tat, paused, span; µs of Redis time; each replica's load), sends out (a sorted set: send ->
#: its slot's time plus ARGV[6], the longest a call can be out, when its hold lapses if its answer is never
#: told: a replica cut off, or gone), sends answered (send -> when its answer came back). A send holds a slot
#: until a span after its answer (or its lapse). ARGV: capacity, span µs, this replica's id, its load, the
#: send's name, most µs out. Reserves the next slot, or none while `capacity` sends are out (their answers
#: free the slots); returns {µs until the slot (-1: none yet), sends holding a slot, µs of pause left, span
#: µs, the other replicas' load (reported within 2 s), the slot's time in µs of Redis time}.
CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cap = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'tat', 'paused', 'span')
local tat = tonumber(state[1]) or 0
local paused = tonumber(state[2]) or 0
local span = math.max(tonumber(state[3]) or 0, tonumber(ARGV[2]))
local gone = string.format('%.0f', now - span)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', gone)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', gone)
local held = redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])
local at = math.max(now, tat, paused)
if held >= cap then
  local ends = {}
  local answered = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
  for i = 2, #answered, 2 do ends[#ends + 1] = tonumber(answered[i]) end
  local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now), 'WITHSCORES')
  for i = 2, #lapsed, 2 do ends[#ends + 1] = tonumber(lapsed[i]) end
  table.sort(ends)
  local freeing = ends[held - cap + 1]
  if freeing == nil then at = -1 else at = math.max(at, freeing + span) end
end
if at >= 0 then
  redis.call('ZADD', KEYS[2], string.format('%.0f', at + tonumber(ARGV[6])), ARGV[5])
  redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', math.max(tat, at) + span / cap),
    'span', string.format('%.0f', span))
  held = held + 1
end
local ttl = math.floor((math.max(at, paused, now) - now + span + tonumber(ARGV[6])) / 1000) + 1000
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
redis.call('HSET', KEYS[1], 'load:' .. ARGV[3], ARGV[4] .. ':' .. string.format('%.0f', now))
local others = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if string.sub(fields[i], 1, 5) == 'load:' and fields[i] ~= 'load:' .. ARGV[3] then
    local load, seen = string.match(fields[i + 1], '^(%d+):(%d+)$')
    if load and tonumber(seen) > now - 2000000 then
      others = others + tonumber(load)
    else
      redis.call('HDEL', KEYS[1], fields[i])
    end
  end
end
local wait = -1
if at >= 0 then wait = math.floor(at - now) end
return {wait, held, math.floor(math.max(paused - now, 0)), math.floor(span), others, string.format('%.0f', at)}
"""

#: KEYS: sends out, sends answered. ARGV: the send's name, its slot's time (µs), how long (ms) an answer must
#: be kept (a span, and then some). Its answer came back (or it was never used): it holds its slot until a
#: span from now (from its slot's time, if that is later).
ANSWERED = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  redis.call('ZADD', KEYS[2], string.format('%.0f', math.max(now, tonumber(ARGV[2]))), ARGV[1])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
end
return 1
"""

#: KEYS: state hash. ARGV: pause µs, widen by µs, widest span µs, span µs. An upstream 429 on any replica.
LIMITED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local state = redis.call('HMGET', KEYS[1], 'paused', 'span')
local paused = math.max(tonumber(state[1]) or 0, now + tonumber(ARGV[1]))
local span = math.max(tonumber(state[2]) or 0, tonumber(ARGV[4]))
span = math.max(span, math.min(span + tonumber(ARGV[2]), tonumber(ARGV[3])))
redis.call('HSET', KEYS[1], 'paused', string.format('%.0f', paused), 'span', string.format('%.0f', span))
redis.call('PEXPIRE', KEYS[1], math.floor((paused - now + span) / 1000) + 1000)
return 1
"""

MICRO = 1_000_000
#: While every slot of the key is held by sends still out, ask Redis again this much later (seconds).
RETRY = 0.02


class RedisBudget:
    """A `Budget` (see `budget`) whose slots are reserved in Redis; `local` mirrors this replica's own sends and
    pauses (so it asks Redis only when a slot may be free), and replaces Redis while Redis is down."""

    def __init__(
        self,
        link: RedisLink,
        provider: str,
        credential: str,
        local: SlidingWindow,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_out: float = 60.0,
    ) -> None:
        """`max_out`: the longest one upstream call can be out (seconds): past it a send's hold lapses even
        if its answer was never told (this replica cut off from Redis, or gone)."""
        self._link = link
        self._max_out = max_out
        self._local = local
        self._clock = clock
        tag = "{" + f"{provider}:{credential}" + "}"  # one hash slot per key's budget (Redis Cluster)
        self._keys = [link.key(tag, "budget"), link.key(tag, "out"), link.key(tag, "answered")]
        self._claim = link.script(CLAIM)
        self._answered = link.script(ANSWERED)
        self._names = itertools.count()
        self._limited = link.script(LIMITED)
        self._shared_used = (0.0, -1e18)  # (share of the window the replicas used, when it was read)
        self._id = secrets.token_hex(6)
        self._load = 0  # this replica's, as last reported by its Pacer
        self._others = (0, -1e18)  # (the other replicas' load on the key, when it was read)
        self._pending: set[asyncio.Task[Any]] = set()

    @property
    def capacity(self) -> int:
        return self._local.capacity

    @property
    def span(self) -> float:
        return self._local.span

    @property
    def paused_until(self) -> float:
        return self._local.paused_until

    def next_free(self, now: float) -> float:
        return self._local.next_free(now)

    async def claim(self, now: float) -> Send:
        """One round trip: the slot Redis reserved for this send, in this process's clock; or, while every slot
        is held by sends still out (on any replica), none yet: a Send not `reserved`, to ask again RETRY later."""
        name = f"{self._id}:{next(self._names)}"
        args = [self._local.capacity, round(self._local.span * MICRO), self._id, self._load, name,
                round(self._max_out * MICRO)]  # fmt: skip
        try:
            delay, held, paused, span, others, slot = await self._link.run(
                lambda _: self._claim(keys=self._keys, args=args)
            )
        except LinkDown:
            return self._local.record(now)
        clock = self._clock()
        if int(paused):
            self._local.pause(clock + int(paused) / MICRO)
        if int(span) / MICRO > self._local.span:  # another replica drew an unexpected 429
            self._local.resize(int(span) / MICRO)
        self._shared_used = (int(held) / self._local.capacity, clock)
        self._others = (int(others), clock)
        if int(delay) < 0:
            return Send(clock + RETRY, reserved=False)
        at = max(now, clock + int(delay) / MICRO)
        return self._local.record(at, then=functools.partial(self._release, name, slot))

    def pause(self, until: float) -> None:
        self._local.pause(until)
        self._send_limited(max(until - self._clock(), 0.0), 0.0, self._local.span, self._local.span)

    def resize(self, span: float) -> None:
        """This replica's window; a wider one is every replica's (the shared span only ever widens until the
        key's record expires)."""
        base = self._local.span
        self._local.resize(span)
        if span > base:
            self._send_limited(0.0, span - base, span, base)

    def used(self, now: float) -> float:
        shared, seen = self._shared_used
        return max(self._local.used(now), shared if now - seen < self._local.span else 0.0)

    def load(self, local: int) -> int:
        """This replica's load plus the others' (as the last claim read it, for 2 s)."""
        self._load = local
        others, seen = self._others
        return local + (others if self._clock() - seen < 2.0 else 0)

    def idle(self, now: float) -> bool:
        return self._local.idle(now) and not self._pending

    def _send_limited(self, pause: float, extra: float, ceiling: float, base: float) -> None:
        """Tell every replica (best effort: an unreachable Redis leaves the pause to this replica)."""
        args = [round(pause * MICRO), round(extra * MICRO), round(ceiling * MICRO), round(base * MICRO)]
        self._tell(lambda: self._limited(keys=self._keys[:1], args=args))

    def _release(self, name: str, slot: object) -> None:
        """A send's answer came back: its shared hold ends a span from now (best effort: else at `max_out`)."""
        keep = round(self._local.span * 1000) + 1000
        self._tell(lambda: self._answered(keys=self._keys[1:], args=[name, slot, keep]))

    def _tell(self, script: Callable[[], Awaitable[Any]]) -> None:
        """Run a script in the background (a Redis that is down loses it: see the callers)."""

        async def send() -> None:
            try:
                await self._link.run(lambda _: script())
            except LinkDown:
                pass

        task = asyncio.get_running_loop().create_task(send())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
