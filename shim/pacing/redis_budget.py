"""One key's budget shared by every replica, in Redis (SHIM_REDIS_URL): each upstream call of any replica runs
one script that, on Redis's own clock, reserves the key's next free slot (capacity per window, even spacing,
any pause) and says when that slot is; upstream 429s pause the key for all. Keys hold the provider and the
credential hash, never a key. Redis unreachable: the process's own window goes on alone (polls of paid tasks
must not stop; a submit needs a job record first, so none goes out without Redis)."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..redis_link import LinkDown, RedisLink
from .window import Send, SlidingWindow

#: KEYS: state hash (tat, paused, span; µs of Redis time; each replica's load), sends list (oldest first).
#: ARGV: capacity, span µs, this replica's id, its load. Reserves the next slot; returns {µs until it, sends in
#: the last span, µs of pause left, span µs, the other replicas' load (reported within 2 s)}.
CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cap = tonumber(ARGV[1])
local state = redis.call('HMGET', KEYS[1], 'tat', 'paused', 'span')
local tat = tonumber(state[1]) or 0
local paused = tonumber(state[2]) or 0
local span = math.max(tonumber(state[3]) or 0, tonumber(ARGV[2]))
local at = math.max(now, tat, paused)
if redis.call('LLEN', KEYS[2]) >= cap then
  at = math.max(at, tonumber(redis.call('LINDEX', KEYS[2], 0)) + span)
end
redis.call('RPUSH', KEYS[2], string.format('%.0f', at))
redis.call('LTRIM', KEYS[2], -cap, -1)
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', math.max(tat, at) + span / cap),
  'span', string.format('%.0f', span))
local ttl = math.floor((math.max(at, paused) - now + span) / 1000) + 1000
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local recent = 0
for _, sent in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  if tonumber(sent) > now - span then recent = recent + 1 end
end
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
return {math.floor(at - now), recent, math.floor(math.max(paused - now, 0)), math.floor(span), others}
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
#: The window's margin when replicas share it (a Pacer alone: 5 ms): the shared list holds when each slot
#: was reserved, not when its answer came back (one more round trip per call), so the jitter of the
#: replicas' paths needs room. With 50 ms, three replicas on one 2-core machine drew an upstream 429 in
#: about half the runs of 60 tasks; with 100 ms, none in four.
MARGIN = 0.1


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
    ) -> None:
        self._link = link
        self._local = local
        self._clock = clock
        tag = "{" + f"{provider}:{credential}" + "}"  # one hash slot per key's budget (Redis Cluster)
        self._keys = [link.key(tag, "budget"), link.key(tag, "sends")]
        self._claim = link.script(CLAIM)
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
        """One round trip: the slot Redis reserved for this send, in this process's clock."""
        args = [self._local.capacity, round(self._local.span * MICRO), self._id, self._load]
        try:
            delay, recent, paused, span, others = await self._link.run(
                lambda _: self._claim(keys=self._keys, args=args)
            )
        except LinkDown:
            return self._local.record(now)
        clock = self._clock()
        at = max(now, clock + int(delay) / MICRO)
        if int(paused):
            self._local.pause(clock + int(paused) / MICRO)
        if int(span) / MICRO > self._local.span:  # another replica drew an unexpected 429
            self._local.resize(int(span) / MICRO)
        self._shared_used = (int(recent) / self._local.capacity, clock)
        self._others = (int(others), clock)
        return self._local.record(at)

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

        async def send() -> None:
            try:
                await self._link.run(lambda _: self._limited(keys=self._keys[:1], args=args))
            except LinkDown:
                pass

        task = asyncio.get_running_loop().create_task(send())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
