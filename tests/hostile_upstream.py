"""A small hostile upstream of the tests' own, served by uvicorn: it speaks reAPI's (or reve2img's) wire format,
but every answer is scripted by the test (odd ids, unknown statuses, outages, redirects, huge or slow bodies,
URLs pointing at a "metadata service"), which the faithful emulators never produce."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

POLL_PREFIX = "/api/v1/tasks/"
#: Answer to the n-th poll (1-based) of a task: a starlette Response.
PollScript = Callable[[int, str], Response]


def png(size: tuple[int, int] = (64, 64), colour: str = "green") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def _greyscale_png(width: int, height: int, pixels: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(pixels, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` (a decompression bomb's header; its data is short)."""
    return _greyscale_png(width, height, b"\0" * 64)


def blank_png(side: int) -> bytes:
    """A real, complete `side` x `side` black PNG: megapixels that compress to almost nothing."""
    return _greyscale_png(side, side, (b"\0" * (side + 1)) * side)


def completed(task_id: str, *urls: str, status: str = "completed") -> JSONResponse:
    return JSONResponse({"id": task_id, "status": status, "output": {"image_urls": list(urls)}, "error": None})


@dataclass
class HostileUpstream:
    """reAPI's two endpoints and a file server, scripted per test. Records every call it gets."""

    task_id: str = "task_hostile"
    poll: PollScript | None = None
    submit_reply: Callable[[dict[str, Any]], Response] | None = None
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    drip: dict[str, float] = field(default_factory=dict)  # file name -> seconds between bytes
    redirects: dict[str, str] = field(default_factory=dict)
    submits: list[dict[str, Any]] = field(default_factory=list)
    polls: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    url: str = ""  # set once served

    def app(self) -> ASGIApp:
        routed = Starlette(
            routes=[
                Route("/api/v1/images/generations", self._submit, methods=["POST"]),
                Route("/files/{name:path}", self._file, methods=["GET"]),
            ]
        )

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            # Polls by hand: a task id may hold characters (CR, LF) that no route pattern matches.
            if scope["type"] == "http" and scope["path"].startswith(POLL_PREFIX):
                response = await self._poll(scope["path"][len(POLL_PREFIX) :])
                await response(scope, receive, send)
            else:
                await routed(scope, receive, send)

        return app

    async def _submit(self, request: Request) -> Response:
        body = await request.json()
        self.submits.append(body)
        if self.submit_reply is not None:
            return self.submit_reply(body)
        return JSONResponse({"id": self.task_id, "model": body.get("model"), "status": "processing"})

    async def _poll(self, task_id: str) -> Response:
        self.polls.append(task_id)
        if self.poll is None:
            return completed(task_id, f"{self.url}/files/0.png")
        return self.poll(len(self.polls), task_id)

    async def _file(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.fetched.append(name)
        if name in self.redirects:
            return Response(status_code=302, headers={"location": self.redirects[name]})
        data, content_type = self.files.get(name, (png(), "image/png"))
        if name in self.drip:
            delay = self.drip[name]

            async def trickle() -> AsyncIterator[bytes]:
                for i in range(len(data)):
                    await asyncio.sleep(delay)
                    yield data[i : i + 1]

            return StreamingResponse(trickle(), media_type=content_type)
        return Response(data, media_type=content_type)


@dataclass
class Bystander:
    """A server the shim must never reach: a cloud metadata service, an internal admin page."""

    hits: list[str] = field(default_factory=list)

    def app(self) -> Starlette:
        async def anything(request: Request) -> Response:
            self.hits.append(request.url.path)
            return Response(b'{"AccessKeyId": "AKIA-SECRET", "SecretAccessKey": "hunter2"}', media_type="image/png")

        return Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])
