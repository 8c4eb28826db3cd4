"""The benchmark's clients, each recording one `Answer` per image asked for: the openai SDK against the shim,
the naive loop of reAPI's quickstart straight against the emulator, and raw requests held open on the shim."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx

if TYPE_CHECKING:
    from openai import AsyncOpenAI

#: What the SDK clients ask for, and what the shim sends upstream for it (so the naive loop asks the same).
SDK_REQUEST = {"model": "gpt-image-1", "size": "1024x1024", "response_format": "url"}  # and a quality
UPSTREAM_BODY = {"model": "gpt-image-2-official", "size": "1024x1024", "resolution": "1k"}
CLIENT_TIMEOUT = 600.0


Quality = Literal["low", "medium", "high"]


@dataclass(slots=True)
class Answer:
    """One client request: when it started, when its answer came (monotonic), and the upstream task behind it."""

    started: float
    answered: float | None = None
    task_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.task_id is not None


#: Makes request number i and records its answer.
Request = Callable[[int], Coroutine[Any, Any, Answer]]


async def run_clients(one: Request, *, concurrency: int, rounds: int = 1) -> list[Answer]:
    """`concurrency` clients, each making `rounds` requests one after another; request i gets index i."""

    async def client(c: int) -> list[Answer]:
        return [await one(c * rounds + r) for r in range(rounds)]

    per_client = await asyncio.gather(*(client(c) for c in range(concurrency)))
    return [answer for answers in per_client for answer in answers]


def open_sdk(shim_url: str, key: str) -> AsyncOpenAI:
    """The real AsyncOpenAI SDK on the shim: no retries, a timeout far past any task."""
    import openai

    return openai.AsyncOpenAI(base_url=shim_url + "/v1", api_key=key, max_retries=0, timeout=CLIENT_TIMEOUT)


@dataclass(frozen=True, slots=True)
class Ask:
    """One kind of image an SDK client asks the shim for (its latency class), and an emulator prompt marker."""

    model: str = "gpt-image-1"
    quality: Quality | None = "low"
    size: str = "1024x1024"
    marker: str = ""  # e.g. "[latency=1.0]": the task takes exactly that long, whatever the time scale


def sdk_client(client: AsyncOpenAI, *, asks: Sequence[Ask] = (Ask(),), tag: str) -> Request:
    """One images.generate through the SDK (request i asks `asks[i % len(asks)]`), read raw for the
    x-upstream-task-ids header."""
    import openai

    async def one(i: int) -> Answer:
        answer = Answer(time.monotonic())
        ask = asks[i % len(asks)]
        extra: dict[str, Any] = {} if ask.quality is None else {"quality": ask.quality}
        try:
            raw = await client.images.with_raw_response.generate(
                model=ask.model,
                prompt=f"{ask.marker}{tag} #{i}: a red panda eating bamboo",
                size=ask.size,  # any WxH the shim accepts, not only the SDK's enum
                response_format="url",
                **extra,
            )
        except openai.APIStatusError as exc:
            answer.error = f"HTTP {exc.status_code}"
            return answer
        except openai.APIError as exc:
            answer.error = type(exc).__name__
            return answer
        answer.answered = time.monotonic()
        images = raw.parse()
        task_ids = raw.headers.get("x-upstream-task-ids", "")
        answer.task_id = task_ids.split(",")[0] or None
        if not images.data or not images.data[0].url:
            answer.error = "no image url"
        return answer

    return one


def naive_client(
    http: httpx.AsyncClient, emulator_url: str, key: str, *, quality: Quality, interval: float, tag: str
) -> Request:
    """The quickstart's loop: submit, then sleep `interval` and poll until terminal.

    As in the docs' code, a refused submit loses the task (`submit['id']` does not exist); a poll that is
    refused (429) is tried again at the next tick.
    """
    headers = {"Authorization": f"Bearer {key}"}

    async def one(i: int) -> Answer:
        answer = Answer(time.monotonic())
        body = {**UPSTREAM_BODY, "quality": quality, "prompt": f"{tag} #{i}: a red panda eating bamboo"}
        submitted = await http.post(emulator_url + "/api/v1/images/generations", headers=headers, json=body)
        task_id = submitted.json().get("id")
        if submitted.status_code != 200 or not task_id:
            answer.error = f"submit HTTP {submitted.status_code}"
            return answer
        deadline = answer.started + CLIENT_TIMEOUT
        while time.monotonic() < deadline:
            await asyncio.sleep(interval)
            polled = await http.get(f"{emulator_url}/api/v1/tasks/{task_id}", headers=headers)
            status = polled.json().get("status") if polled.status_code == 200 else None
            if status == "completed":
                answer.answered, answer.task_id = time.monotonic(), task_id
                return answer
            if status == "failed":
                answer.error = "task failed"
                return answer
        answer.error = "timeout"
        return answer

    return one


def held_client(
    shim_url: str, key: str, *, quality: Quality, tag: str, overrides: Mapping[str, object] | None = None
) -> Request:
    """One POST /v1/images/generations written on a bare asyncio connection: with thousands open at once an
    HTTP client's connection pool costs more CPU than the shim being measured. `overrides` change the body
    (b64_json and jpeg, say)."""
    url = urlsplit(shim_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80

    async def one(i: int) -> Answer:
        answer = Answer(time.monotonic())
        body = {**SDK_REQUEST, "quality": quality, "prompt": f"{tag} #{i}: a red panda eating bamboo"}
        payload = json.dumps({**body, **(overrides or {})}).encode()
        head = (
            f"POST /v1/images/generations HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            answer.error = type(exc).__name__
            return answer
        try:
            writer.write(head.encode() + payload)
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            await reader.read()  # Connection: close, so the body ends at EOF
        except OSError as exc:
            answer.error = type(exc).__name__
            return answer
        finally:
            writer.close()
        answer.answered = time.monotonic()
        status = status_line.split(b" ", 2)[1:2]
        if status != [b"200"]:
            answer.error = f"HTTP {status[0].decode() if status else '?'}"
        answer.task_id = headers.get("x-upstream-task-ids", "").split(",")[0] or None
        return answer

    return one
