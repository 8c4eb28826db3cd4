"""The durable index of videos (`<SHIM_STATE_DIR>/videos.jsonl`): what a restarted shim needs to answer for a
video id an earlier process created, for as long as its result lives upstream. Per video: its owner (a
credential hash), its fingerprint, its route and shape (model ids, seconds, size, tier, the video it remixes,
when it was created), its upstream task id and how it ended. Never a key, a prompt or a result URL: the
upstream task is polled again for the URLs (polls cost nothing), and the prompt is answered only while the
process that was given it lives (see the README).

Append-only JSON lines, one `write` each (fsync'd for the record that creates a video, before its id is
answered); compacted at start-up (deleted and expired videos dropped). The journal's lock on the directory
keeps a second process off it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .files import replace_atomically, write_all

VERSION = 1
FILE_NAME = "videos.jsonl"
#: Record kinds: a video created (its entry), its task known, its end, its deletion.
KINDS = ("video", "task", "ended", "deleted")
_TEXTS = ("id", "credential", "fingerprint", "provider", "model", "upstream_model", "size")


@dataclass(frozen=True, slots=True)
class VideoEntry:
    """One video as the index knows it (folded from its records)."""

    id: str
    credential: str
    fingerprint: str
    provider: str
    model: str
    upstream_model: str
    seconds: int
    size: str
    created_at: int
    resolution: str | None = None
    remixed_from: str | None = None
    task: str | None = None
    task_at: float | None = None
    duration: int | None = None
    status: str | None = None  # completed | failed, once it ended
    ended_at: int | None = None
    error_code: str | None = None  # a failed one's code ("80003", "invalid_value")


def encode(kind: str, fields: Mapping[str, Any]) -> bytes:
    return json.dumps({"v": VERSION, "kind": kind, **fields}, separators=(",", ":")).encode() + b"\n"


def entry_record(entry: VideoEntry) -> bytes:
    """The `video` record of an entry (its shape; the task and end are records of their own)."""
    data = dataclasses.asdict(entry)
    for name in ("task", "task_at", "duration", "status", "ended_at", "error_code"):
        data.pop(name)
    return encode("video", {k: v for k, v in data.items() if v is not None})


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _entry(data: Mapping[str, Any]) -> VideoEntry | None:
    texts = [data.get(name) for name in _TEXTS]
    seconds, created_at = _int(data.get("seconds")), _int(data.get("created_at"))
    resolution, remixed_from = data.get("resolution"), data.get("remixed_from")
    if not all(isinstance(t, str) and t for t in texts) or seconds is None or created_at is None:
        return None
    if not all(o is None or isinstance(o, str) for o in (resolution, remixed_from)):
        return None
    video_id, credential, fingerprint, provider, model, upstream_model, size = (str(t) for t in texts)
    return VideoEntry(
        video_id, credential, fingerprint, provider, model, upstream_model, seconds, size, created_at,
        resolution=resolution, remixed_from=remixed_from,
    )  # fmt: skip


def fold(lines: Iterable[bytes]) -> dict[str, VideoEntry]:
    """The live videos these lines describe (unreadable lines and records of unknown videos are skipped)."""
    videos: dict[str, VideoEntry] = {}
    for line in lines:
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("v") != VERSION or data.get("kind") not in KINDS:
            continue
        video_id = data.get("id")
        kind = data["kind"]
        if kind == "video":
            entry = _entry(data)
            if entry is not None:
                videos[entry.id] = entry
            continue
        known = videos.get(video_id) if isinstance(video_id, str) else None
        if known is None:
            continue
        if kind == "deleted":
            del videos[known.id]
        elif kind == "task" and isinstance(data.get("task"), str) and data["task"]:
            at = data.get("at")
            at = float(at) if isinstance(at, int | float) and math.isfinite(at) else None
            videos[known.id] = dataclasses.replace(
                known, task=data["task"], task_at=at, duration=_int(data.get("duration"))
            )
        elif kind == "ended" and data.get("status") in ("completed", "failed"):
            code = data.get("code") if isinstance(data.get("code"), str) else None
            videos[known.id] = dataclasses.replace(
                known, status=data["status"], ended_at=_int(data.get("at")), error_code=code
            )
    return videos


def records(entry: VideoEntry) -> bytes:
    """The lines that rebuild `entry` (compaction writes these)."""
    out = entry_record(entry)
    if entry.task:
        out += encode("task", {"id": entry.id, "task": entry.task, "at": entry.task_at, "duration": entry.duration})
    if entry.status:
        ended = {"id": entry.id, "status": entry.status, "at": entry.ended_at, "code": entry.error_code}
        out += encode("ended", ended)
    return out


class VideoIndex:
    """The open index of one process: `entries()` as read at start-up, then `append`s."""

    def __init__(self, directory: str, *, horizon: float, now: float) -> None:
        """Read the file, drop deleted videos and those created more than `horizon` seconds before `now`, and
        rewrite it with the rest. Raises OSError."""
        self.path = os.path.join(directory, FILE_NAME)
        self._lock = threading.Lock()
        try:
            with open(self.path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            data = b""
        self._entries = [e for e in fold(data.split(b"\n")).values() if now - e.created_at <= horizon]
        replace_atomically(self.path, b"".join(records(e) for e in self._entries))
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)

    def entries(self) -> list[VideoEntry]:
        return list(self._entries)

    def append(self, line: bytes, *, durable: bool) -> None:
        """One record, in one write; with `durable`, on disk before returning (fsync, outside the lock: the
        event loop's own appends never wait for a disk flush). Raises OSError."""
        with self._lock:
            if self._fd < 0:
                raise OSError("the video index is closed")
            write_all(self._fd, line)
            fd = self._fd
        if durable:
            os.fsync(fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
