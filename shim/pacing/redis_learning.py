"""What one replica's tasks teach, every replica learns (with SHIM_REDIS_URL).

Each completion a replica's learner records is appended to one Redis stream per upstream: the latency class
and the interval the task finished in, seconds after its submit (never a key, a prompt or a task id). Every
replica reads the stream and folds the other replicas' completions into its own LatencyLearner, as tasks of
its own that started just now. A replica that starts reads the latest entries first, so that it starts from
what the fleet saw last rather than from the documented table. Best effort: while Redis is down, or slow to
take what is told, each replica learns alone. What others wrote is checked before it is believed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from typing import Any

from ..redis_link import LinkDown, RedisLink
from .learner import LatencyLearner

log = logging.getLogger("shim")

#: About this many completions are kept in the stream; a starting replica reads the latest HISTORY.
STREAM_LENGTH = 512
HISTORY = 64
#: How often the stream is read when it had nothing new (seconds), and at most how many entries at once.
READ_EVERY = 0.2
READ_COUNT = 200
#: The stream expires this long after its last append (seconds): a fleet idle that long starts afresh.
KEEP_SECONDS = 24 * 3600
#: Past this many appends still waiting for Redis, completions are not told (Redis is slow or down).
MAX_PENDING = 64
#: What is believed of an entry: a class name of printable ASCII up to this long, and times up to this.
MAX_CLASS_NAME = 200
LONGEST = 7 * 24 * 3600.0
#: A class heard of, and not known here, is learned only while the learner holds fewer classes than this.
MAX_CLASSES = 512


def read_entry(fields: Any) -> tuple[str, str, float, float] | None:
    """(replica, class, after, before) of a stream entry, or None when it is not one we wrote."""
    if not isinstance(fields, dict):
        return None
    replica, latency_class = fields.get("r"), fields.get("c")
    if not isinstance(replica, str) or not isinstance(latency_class, str):
        return None
    if not 0 < len(latency_class) <= MAX_CLASS_NAME or not latency_class.isascii() or not latency_class.isprintable():
        return None
    try:
        after, before = float(fields.get("a", "")), float(fields.get("b", ""))
    except ValueError:
        return None
    if not (math.isfinite(after) and math.isfinite(before) and 0 <= after <= before <= LONGEST):
        return None
    return replica, latency_class, after, before


class SharedLearning:
    """One upstream's stream of completions: `start` it once the event loop runs, `aclose` it before the link."""

    def __init__(self, link: RedisLink, provider: str, learner: LatencyLearner, *, replica: str | None = None) -> None:
        self._link = link
        self._key = link.key("learned", provider)
        self._learner = learner
        self._replica = replica or secrets.token_hex(8)
        self._pending: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        learner.share(self._tell)

    def start(self) -> None:
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self._pending:
            await asyncio.wait(self._pending, timeout=1.0)

    # --- telling -----------------------------------------------------------------------------------------

    def _tell(self, latency_class: str, after: float, before: float) -> None:
        """A completion learned here: append it to the stream in the background (dropped when Redis lags)."""
        if self._reader is None or len(self._pending) >= MAX_PENDING:
            return
        fields = {"r": self._replica, "c": latency_class, "a": repr(after), "b": repr(before)}
        task = asyncio.get_running_loop().create_task(self._append(fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _append(self, fields: dict[str, str]) -> None:
        async def append(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            pipe.xadd(self._key, fields, maxlen=STREAM_LENGTH, approximate=True)
            pipe.expire(self._key, KEEP_SECONDS)
            return await pipe.execute()

        try:
            await self._link.run(append)
        except LinkDown:
            pass  # learning is best effort: this replica keeps what it learned
        except Exception as exc:  # a Redis that refuses the command (a key of another type, say)
            log.warning("could not share a completion on redis (%s)", type(exc).__name__)

    # --- hearing -----------------------------------------------------------------------------------------

    async def _read(self) -> None:
        """Read the latest HISTORY entries, then every new one, for as long as the replica runs."""
        last: str | None = None
        while True:
            try:
                if last is None:
                    last = await self._history()
                    continue
                answer = await self._link.run(
                    lambda client: client.xread({self._key: last}, count=READ_COUNT)  # noqa: B023 - awaited at once
                )
                entries = [entry for _, stream in answer or () for entry in stream]
                for entry_id, fields in entries:
                    last = entry_id
                    self._hear(fields)
                if len(entries) < READ_COUNT:
                    await asyncio.sleep(READ_EVERY)
            except LinkDown:
                await asyncio.sleep(READ_EVERY)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let a bad stream stop the replica's own learning
                log.warning("could not read shared completions from redis (%s)", type(exc).__name__)
                await asyncio.sleep(10 * READ_EVERY)

    async def _history(self) -> str:
        """Learn the latest entries (oldest first); the id to read on from."""
        entries = await self._link.run(lambda client: client.xrevrange(self._key, count=HISTORY))
        for _, fields in reversed(entries or []):
            self._hear(fields)
        return str(entries[0][0]) if entries else "0-0"

    def _hear(self, fields: Any) -> None:
        entry = read_entry(fields)
        if entry is None:
            return
        replica, latency_class, after, before = entry
        if replica == self._replica:
            return
        if not self._learner.knows(latency_class) and self._learner.size() >= MAX_CLASSES:
            return
        self._learner.observe(latency_class, after, before, heard=True)
