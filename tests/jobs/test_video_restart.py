"""A video id survives a restart with SHIM_STATE_DIR: the index (`videos.jsonl`) keeps owners, shapes, task ids
and ends, never a key, a prompt or a result URL; the restarted shim resumes the video's job by its id (its
task polled again, never resubmitted). Plus the index's own folding and compaction, pure."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from shim.app import create_app
from shim.jobs.video_index import FILE_NAME, VideoEntry, VideoIndex, encode, fold, records

from ..conftest import ServedApp, served, shim_settings
from ..emulator.test_video_mp4 import decode

pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")
DAY = 86400


@pytest.fixture
def settings(reapi_upstream, reve2img_upstream, tmp_path: Path) -> Any:
    return shim_settings(reapi_upstream, reve2img_upstream, state_dir=str(tmp_path))


def client(server: ServedApp, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def finished(sdk: openai.OpenAI, video_id: str) -> Any:
    for _ in range(300):
        video = sdk.videos.retrieve(video_id)
        if video.status in ("completed", "failed"):
            return video
        time.sleep(0.1)
    raise AssertionError(f"{video_id} never finished")


def test_running_video_resumes_after_a_restart(settings, reapi_state, key, tmp_path) -> None:
    """A video still running when the shim stops is found by id after the restart, polled to completion and
    downloaded: one paid task in all; its prompt is not known any more; the index holds no key or prompt."""
    with served(create_app(settings)) as first:
        video = client(first, key).videos.create(prompt="[latency=1.5] survive a deploy", size="1280x720")
    with served(create_app(settings)) as second:
        sdk = client(second, key)
        done = finished(sdk, video.id)
        data = sdk.videos.download_content(video.id).read()
        assert client(second, key + "-other").videos.list().data == []
        with pytest.raises(openai.NotFoundError):
            client(second, key + "-other").videos.retrieve(video.id)
    assert (done.status, done.size, done.seconds, done.model, done.prompt) == (
        "completed", "1280x720", "4", "sora-2", None,
    )  # fmt: skip
    assert decode(data, limit=1).width == 1280
    assert reapi_state.counters(key)["submits"] == 1
    index = (tmp_path / FILE_NAME).read_bytes()
    for secret in (key.encode(), b"survive a deploy", b"/media/tasks/"):
        assert secret not in index


def test_completed_video_is_still_there_after_a_restart(settings, reapi_state, key) -> None:
    """A video that completed before the restart answers completed at once (same completed_at), lists, and
    its content downloads (the upstream task is polled again for its URL); remixing it needs its prompt."""
    with served(create_app(settings)) as first:
        sdk = client(first, key)
        video = sdk.videos.create_and_poll(prompt="[latency=0.2] before", poll_interval_ms=100)
        deleted = sdk.videos.create_and_poll(prompt="[latency=0.2] gone", poll_interval_ms=100)
        sdk.videos.delete(deleted.id)
    with served(create_app(settings)) as second:
        sdk = client(second, key)
        again = sdk.videos.retrieve(video.id)
        listed = [v.id for v in sdk.videos.list()]
        data = sdk.videos.download_content(video.id).read()
        with pytest.raises(openai.BadRequestError) as no_prompt:
            sdk.videos.remix(video.id, prompt="more")
        with pytest.raises(openai.NotFoundError):
            sdk.videos.retrieve(deleted.id)
    assert (again.status, again.completed_at, again.progress) == ("completed", video.completed_at, 100)
    assert listed == [video.id]
    assert decode(data, limit=1).height == 1280
    assert "prompt" in no_prompt.value.message
    assert reapi_state.counters(key)["submits"] == 2


def test_sdk_retry_of_a_create_after_a_restart_attaches(settings, reapi_state, key) -> None:
    """The SDK's retry of a create (x-stainless-retry-count: 1) after a restart is the same video, not a
    second paid task, and brings the prompt back."""
    body = {"prompt": "[latency=1.0] retried", "seconds": "4"}
    with served(create_app(settings)) as first:
        created = httpx.post(first.url + "/v1/videos", json=body, headers={"Authorization": f"Bearer {key}"})
    with served(create_app(settings)) as second:
        headers = {"Authorization": f"Bearer {key}", "x-stainless-retry-count": "1"}
        retried = httpx.post(second.url + "/v1/videos", json=body, headers=headers)
        done = finished(client(second, key), created.json()["id"])
    assert retried.status_code == 200 and retried.json()["id"] == created.json()["id"]
    assert retried.headers["x-shim-attached"] == "true"
    assert (done.status, done.prompt) == ("completed", "[latency=1.0] retried")
    assert reapi_state.counters(key)["submits"] == 1


ENTRY = VideoEntry("video_1", "cred", "fp", "reapi", "sora-2", "doubao-seedance-2.0", 4, "720x1280", 1000)


def test_index_folds_a_videos_records() -> None:
    """An entry, its task and its end fold into one VideoEntry; deletion removes it; records of unknown
    videos and unreadable lines are skipped; an entry rebuilds from its own records."""
    lines = [
        records(ENTRY),
        encode("task", {"id": "video_1", "task": "task_9", "at": 1001.5, "duration": 5}),
        encode("task", {"id": "video_x", "task": "task_0"}),
        b'{"v":1,"kind":"task","id":\n',
        encode("ended", {"id": "video_1", "status": "failed", "at": None, "code": "80003"}),
    ]
    (folded,) = fold(b"".join(lines).split(b"\n")).values()
    expected = dataclasses.replace(
        ENTRY, task="task_9", task_at=1001.5, duration=5, status="failed", error_code="80003"
    )
    assert folded == expected
    assert fold(records(folded).split(b"\n")) == {"video_1": folded}
    assert fold((records(ENTRY) + encode("deleted", {"id": "video_1"})).split(b"\n")) == {}


def test_index_compacts_expired_and_deleted_videos_at_start_up(tmp_path: Path) -> None:
    """Opening the index keeps the videos within the horizon and rewrites the file with just those."""
    old = dataclasses.replace(ENTRY, id="video_old", created_at=0)
    gone = dataclasses.replace(ENTRY, id="video_gone")
    (tmp_path / FILE_NAME).write_bytes(
        records(ENTRY) + records(old) + records(gone) + encode("deleted", {"id": "video_gone"}) + b"torn"
    )
    index = VideoIndex(str(tmp_path), horizon=7 * DAY, now=999 + 7 * DAY)  # video_old is a second too old
    try:
        assert [e.id for e in index.entries()] == ["video_1"]
        index.append(encode("deleted", {"id": "video_1"}), durable=True)
    finally:
        index.close()
    lines = (tmp_path / FILE_NAME).read_bytes().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == ["video", "deleted"]
