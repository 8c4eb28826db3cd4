"""OpenAI's video resources over the job registry. A video is one job (its id is the job's, spelled
`video_...`), owned by the credential that created it and kept until its result expires upstream (N "Result
URLs stay valid for 7 days"); with SHIM_STATE_DIR, also in the video index, so that its id survives a restart.

While its job runs, a video's state is read from the job (the events of the registry say when its task is
known and when it ends); once it ends, the outcome stays on the video (its URLs, the last frame, the error)
and the job is left to the registry's TTL. After a restart a video is dormant: a request with its owner's key
resumes its job (the known task is polled again, never resubmitted).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from .. import errors
from ..events import Events
from ..pacing.latency import LatencyModel
from ..types import Route, VideoSpec, VideoStatus, VideoView
from ..workers import SerialWorker
from .job import Job
from .journal import Submitted
from .registry import Jobs
from .video_index import VideoEntry, VideoIndex, encode, entry_record

log = logging.getLogger("shim")

#: N "Result URLs stay valid for 7 days": how long a finished video stays downloadable (and kept).
RESULT_SECONDS = 7 * 86400
ID_PREFIX = "video_"
#: A progress estimate never says 100 before the upstream does.
MAX_RUNNING_PROGRESS = 99
#: An uploaded reference is still given to a remix only while this much of its media TTL is left (the
#: upstream fetches it after the submit).
REFERENCE_MARGIN = 300.0
#: The events that end a job here: it ran here, or another replica ran it and this one followed its record.
ENDED = ("job_finished", "job_followed")


def video_id(job_id: str) -> str:
    return ID_PREFIX + job_id.removeprefix("job_")


def job_id_of(video: str) -> str:
    return "job_" + video.removeprefix(ID_PREFIX)


@dataclass(eq=False)
class Video:
    """One video resource (mutable: its live state)."""

    id: str
    credential: str
    fingerprint: str
    spec: VideoSpec
    created_at: int
    prompt_known: bool = True
    job: Job | None = None
    task: str | None = None
    task_at: float | None = None  # wall time of its submit
    duration: int | None = None  # what the upstream took (a fallback, maybe)
    status: VideoStatus | None = None  # once it ended: completed | failed
    completed_at: int | None = None
    urls: tuple[str, ...] = ()
    extras: dict[str, str] = field(default_factory=dict)
    error: tuple[str, str] | None = None
    progress: int = 0
    reference_expires: float | None = None  # an uploaded reference's end of life (None: a client's URL)
    indexed: bool = False  # the index holds its entry (so its task and end may be recorded)
    order: int = 0  # creation order in this process (restored ones first, as the index has them)

    @property
    def seconds(self) -> int:
        return self.duration or self.spec.seconds


class Videos:
    """The video resources of this process (see the module docstring)."""

    def __init__(
        self,
        jobs: Jobs,
        events: Events,
        *,
        estimate: Callable[[str, str], LatencyModel],
        index: VideoIndex | None = None,
        max_task_seconds: float = 3600.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`estimate(provider, latency_class)` is what the pacer has learned of a class (progress is read
        from it); `index` the durable index (SHIM_STATE_DIR), whose entries come back as dormant videos."""
        self._jobs = jobs
        self._estimate = estimate
        self._index = index
        self._writer = SerialWorker("shim-videos") if index is not None else None
        self._wall = wall
        self._horizon = max_task_seconds + RESULT_SECONDS
        self._by_id: dict[str, Video] = {}
        self._by_job: dict[str, Video] = {}
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}
        self._created = itertools.count()
        for entry in index.entries() if index is not None else ():
            self._keep(_restored(entry))
        events.subscribe(self._on_event)

    # --- creating -----------------------------------------------------------------------------------

    async def create(
        self,
        spec: VideoSpec,
        key: str,
        *,
        idempotency_key: str | None,
        retry_count: int,
        wait: float,
        reference_expires: float | None = None,
    ) -> tuple[Video, bool]:
        """Start (or attach to) the video's job and wait up to `wait` seconds for its submit, so that a refusal
        that created nothing (a 400, a 401, no credits...) is this request's error. Returns (video, attached)."""
        job, attached = await self._jobs.find_or_start(
            spec, key, idempotency_key=idempotency_key, retry_count=retry_count
        )
        video = self._by_id.get(video_id(job.id))
        new = video is None
        if video is None:
            video = Video(video_id(job.id), job.credential, job.fingerprint, spec, int(self._wall()))
            video.reference_expires = reference_expires
            self._keep(video)
        elif not video.prompt_known:  # a retry after a restart brings the prompt back
            video.spec, video.prompt_known = replace(spec, seconds=video.spec.seconds), True
        self._attach(video, job)
        await self._settled(job, wait)
        if job.done and not job.task_ids and (failure := _failure(job)) is not None:
            if new:
                self._drop(video)
            raise copy.copy(failure)  # the job's exception is shared by every request attached to it
        if new:
            await self._record_entry(video)
        return video, attached

    def remix_spec(self, original: Video, prompt: str) -> VideoSpec:
        """A new video's spec: the original's prompt with the new one, its reference, model, seconds and size."""
        status = self.view(original, None).status
        if status != "completed":
            raise errors.InvalidRequest(
                f"Video {original.id} is {status}: only a completed video can be remixed.",
                param="video_id",
                code="invalid_value",
            )
        if not original.prompt_known:
            raise errors.InvalidRequest(
                f"The prompt of video {original.id} is no longer known to the gateway (it restarted since, and it "
                "keeps no prompt on disk): create a new video instead.",
                param="video_id",
                code="invalid_value",
            )
        if original.reference_expires is not None and original.reference_expires - REFERENCE_MARGIN < self._wall():
            raise errors.InvalidRequest(
                f"The uploaded input_reference of video {original.id} has expired from the gateway's media store "
                "(SHIM_MEDIA_TTL_SECONDS): create a new video with it instead.",
                param="video_id",
                code="invalid_value",
            )
        return replace(
            original.spec,
            prompt=f"{original.spec.prompt}\n{prompt}",
            seconds=original.seconds,
            remixed_from=original.id,
        )

    # --- finding --------------------------------------------------------------------------------------

    def get(self, video: str, credential: str) -> Video | None:
        """The video of this id if `credential` (a hash) created it and it has not expired; else None."""
        found = self._by_id.get(video)
        if found is None or found.credential != credential:
            return None
        if self._expired(found):
            self._drop(found)
            return None
        return found

    def list(self, credential: str) -> list[Video]:
        """Every video of a credential, oldest first."""
        mine = [v for v in list(self._by_id.values()) if v.credential == credential]
        for video in mine:
            if self._expired(video):
                self._drop(video)
        return sorted((v for v in mine if v.id in self._by_id), key=lambda v: v.order)

    def delete(self, video: Video) -> tuple[str, ...]:
        """Forget a finished video (a running one is refused: its paid task is never abandoned). Returns the
        uploads it used that no other video of its owner uses (a remix shares its original's): free to release."""
        if self.view(video, None).status not in ("completed", "failed"):
            raise errors.InvalidRequest(
                f"Video {video.id} is still being generated: it can be deleted once it is completed or failed.",
                param="video_id",
                code="invalid_value",
            )
        if video.job is not None:
            self._jobs.forget(video.job)
        self._drop(video)
        self._note(video, "deleted", {"id": video.id})
        shared = {url for other in self.list(video.credential) for url in other.spec.input_urls}
        return tuple(url for url in video.spec.input_urls if url not in shared)

    # --- reading --------------------------------------------------------------------------------------

    def view(self, video: Video, key: str | None) -> VideoView:
        """The video as of now. With its owner's `key`, a dormant video still running resumes its job."""
        if key is not None and video.job is None and video.status is None:
            self._resume(video, key)
        job = video.job
        if job is not None and job.done and video.status is None:
            self._ended(video, job)
        status = self._status(video)
        now = self._wall()
        if status == "completed":
            video.progress = 100
        elif status == "in_progress":
            video.progress = max(video.progress, self._estimated(video, now))
        return VideoView(
            id=video.id,
            model=video.spec.route.public_id,
            status=status,
            progress=video.progress,
            created_at=video.created_at,
            seconds=video.seconds,
            size=video.spec.size,
            prompt=video.spec.prompt if video.prompt_known else None,
            completed_at=video.completed_at,
            expires_at=None if video.completed_at is None else video.completed_at + RESULT_SECONDS,
            error=video.error,
            remixed_from=video.spec.remixed_from,
        )

    def poll_after(self, video: Video) -> float | None:
        """When a client polling this video should look again (seconds): a tenth of what the task likely has
        left, within [0.5, 5]; None once it ended."""
        if video.status is not None:
            return None
        left = self._left(video, self._wall())
        return 1.0 if left is None else min(max(left / 10, 0.5), 5.0)

    async def results(self, video: Video, key: str, timeout: float) -> tuple[tuple[str, ...], Mapping[str, str]]:
        """A completed video's result URLs and extras; one restored from the index polls its task again
        (waiting up to `timeout`). Empty when there are none (yet)."""
        if self.view(video, key).status == "completed" and not video.urls:
            job = video.job or self._resume(video, key)
            assert job.runner is not None  # every job the registry hands out runs
            await asyncio.wait({job.runner}, timeout=timeout)
            if job.done:
                self._ended(video, job)
        return video.urls, video.extras

    # --- inside ---------------------------------------------------------------------------------------

    def _status(self, video: Video) -> VideoStatus:
        if video.status is not None:
            return video.status
        job = video.job
        known = video.task or (job is not None and job.task_ids)
        return "in_progress" if known or job is None else "queued"

    def _estimated(self, video: Video, now: float) -> int:
        """Progress from the learned latency of the video's class: elapsed / (elapsed + median left)."""
        left = self._left(video, now)
        if left is None or video.task_at is None:
            return 0
        age = max(now - video.task_at, 0.0)
        share = age / (age + left) if age + left > 0 else 0.0
        return min(math.floor(100 * share), MAX_RUNNING_PROGRESS)

    def _left(self, video: Video, now: float) -> float | None:
        sub = video.job.accepted.get(0) if video.job is not None else None
        if sub is None or video.task_at is None:
            return None
        model = self._estimate(video.spec.route.provider, sub.latency_class)
        return model.remaining(max(now - video.task_at, 0.0))

    def _attach(self, video: Video, job: Job) -> None:
        video.job = job
        self._by_job[job.id] = video
        if job.task_ids and video.task is None:
            self._task_known(video, job)

    def _resume(self, video: Video, key: str) -> Job:
        known = {0: Submitted(video.task, video.task_at or video.created_at)} if video.task else {}
        job = self._jobs.resume(job_id_of(video.id), video.spec, key, fingerprint=video.fingerprint, known=known)
        self._attach(video, job)
        return job

    def _ended(self, video: Video, job: Job) -> None:
        """Keep what a finished job produced on the video (once), and tell the index."""
        assert job.runner is not None
        if job.runner.cancelled():
            return  # the process is stopping: the video stays as it was (dormant after a restart)
        failure = _failure(job)
        known = video.status is not None  # a restored video polled again: only its URLs were missing
        if failure is None:
            submission, task = job.runner.result().tasks[0]
            video.urls, video.extras = task.urls[:1], dict(task.extras)
            video.duration = video.duration or submission.duration
            if not known:
                video.status, video.completed_at = "completed", int(self._wall())
        elif not known:
            code = getattr(failure, "upstream_code", None) or failure.code or "upstream_error"
            video.status, video.error = "failed", (str(code), failure.message)
        if not known:
            self._note_end(video)

    def _task_known(self, video: Video, job: Job) -> None:
        video.task = job.task_ids[0]
        video.task_at = video.task_at or self._wall()
        accepted = job.accepted.get(0)
        video.duration = video.duration or (accepted.duration if accepted is not None else None)
        fields = {"id": video.id, "task": video.task, "at": video.task_at, "duration": video.duration}
        self._note(video, "task", fields)

    def _on_event(self, name: str, data: Mapping[str, object]) -> None:
        """The registry's events: a job's task became known, or it ended."""
        if name not in ("task_submitted", "task_resumed", *ENDED):
            return
        job_id = str(data.get("job"))
        video = self._by_job.get(job_id)
        if video is not None and video.job is not None and video.job.id == job_id:
            if video.task is None and video.job.task_ids:
                self._task_known(video, video.job)
            if name in ENDED:
                self._ended(video, video.job)
        for waiter in self._waiting.pop(job_id, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _settled(self, job: Job, timeout: float) -> None:
        """Until the job's task is known or the job is over, at most `timeout` seconds."""
        if job.task_ids or job.done:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job.id, []).append(waiter)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not (job.task_ids or job.done):
                    await waiter
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiting.setdefault(job.id, []).append(waiter)

    def _keep(self, video: Video) -> None:
        video.order = next(self._created)
        self._by_id[video.id] = video

    def _drop(self, video: Video) -> None:
        self._by_id.pop(video.id, None)
        if video.job is not None:
            self._by_job.pop(video.job.id, None)

    def _expired(self, video: Video) -> bool:
        return self._wall() - video.created_at > self._horizon

    async def _record_entry(self, video: Video) -> None:
        """The index holds the video before its id is answered (fsync'd); then its task, if known."""
        if self._index is None or self._writer is None:
            return
        try:
            await self._writer.run(functools.partial(self._index.append, entry_record(_entry(video)), durable=True))
        except OSError as exc:
            log.error("video index write failed: video %s: %s", video.id, exc)
            return
        video.indexed = True
        if video.task is not None:
            self._note(
                video, "task", {"id": video.id, "task": video.task, "at": video.task_at, "duration": video.duration}
            )
        if video.status is not None:
            self._note_end(video)

    def _note_end(self, video: Video) -> None:
        code = video.error[0] if video.error else None
        self._note(video, "ended", {"id": video.id, "status": video.status, "at": video.completed_at, "code": code})

    def _note(self, video: Video, kind: str, fields: Mapping[str, object]) -> None:
        """A record after the entry: one write(2), not fsync'd (it survives the process, not the machine)."""
        if self._index is None or not video.indexed:
            return
        try:
            self._index.append(encode(kind, fields), durable=False)
        except OSError as exc:
            log.error("video index write failed: %s %s: %s", kind, video.id, exc)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._index is not None:
            self._index.close()


def _failure(job: Job) -> errors.ShimError | None:
    """The job's failure (None when it succeeded, was cancelled or still runs)."""
    if job.runner is None or not job.runner.done() or job.runner.cancelled():
        return None
    exc = job.runner.exception()
    if exc is None:
        return None
    return (
        exc if isinstance(exc, errors.ShimError) else errors.UpstreamError(f"Unexpected failure: {type(exc).__name__}")
    )


def _entry(video: Video) -> VideoEntry:
    route = video.spec.route
    return VideoEntry(
        id=video.id,
        credential=video.credential,
        fingerprint=video.fingerprint,
        provider=route.provider,
        model=route.public_id,
        upstream_model=route.upstream_model,
        seconds=video.spec.seconds,
        size=video.spec.size,
        created_at=video.created_at,
        resolution=video.spec.resolution,
        remixed_from=video.spec.remixed_from,
    )


def _restored(entry: VideoEntry) -> Video:
    """A dormant video from its index entry: no prompt (the index keeps none), its task and end as recorded."""
    spec = VideoSpec(
        route=Route(entry.model, entry.provider, entry.upstream_model),
        prompt="",
        seconds=entry.duration or entry.seconds,
        size=entry.size,
        resolution=entry.resolution,
        remixed_from=entry.remixed_from,
    )
    video = Video(entry.id, entry.credential, entry.fingerprint, spec, entry.created_at, prompt_known=False)
    video.task, video.task_at, video.duration = entry.task, entry.task_at, entry.duration
    if entry.status in ("completed", "failed"):
        video.status = "completed" if entry.status == "completed" else "failed"
        video.completed_at = entry.ended_at if video.status == "completed" else None
        if video.status == "failed":
            code = entry.error_code or "upstream_error"
            video.error = (code, f"The video failed ({code}), before the gateway restarted.")
    video.indexed = True
    return video
