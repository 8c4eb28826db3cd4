"""Edits and variations end to end: the real openai SDK and replayed client shapes against a uvicorn-served
shim whose SHIM_PUBLIC_URL is its own address, with the reAPI emulator fetching the uploaded media."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import secrets
from collections.abc import Iterator

import httpx
import openai
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shim.openai.multipart import Part, parse_multipart
from shim.web.edits import VARIATION_PROMPT

from ..conftest import SelfAddressedShim, ServedApp

UPLOAD_CAP = 200_000


@pytest.fixture(scope="module")
def public_shim(reapi_upstream, reve2img_upstream) -> Iterator[ServedApp]:
    server = SelfAddressedShim(reapi_upstream, reve2img_upstream, max_upload_bytes=UPLOAD_CAP).start()
    try:
        yield server
    finally:
        server.stop()


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def photo(size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 40, 40), fmt: str = "PNG") -> bytes:
    return encode(Image.new("RGB", size, colour), fmt)


def mask(size: tuple[int, int] = (64, 48)) -> bytes:
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1] // 2))  # transparent: the area to edit
    return encode(image)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sdk(key) -> Iterator:
    """Makes openai clients for this test's key (closed afterwards): `sdk(shim, **options)`."""
    made: list[openai.OpenAI] = []

    def make(shim: ServedApp, **kw) -> openai.OpenAI:
        made.append(openai.OpenAI(base_url=shim.url + "/v1", api_key=key, **kw))
        return made[-1]

    yield make
    for sdk_client in made:
        sdk_client.close()


def tasks_of(state, key: str) -> list:
    return [t for t in state.tasks.values() if t.key == key]


def fetched_hashes(task) -> list[str]:
    assert all(item["status"] == 200 for item in task.fetched_inputs)
    return [item["sha256"] for item in task.fetched_inputs]


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def multipart(parts: list[tuple[str, bytes, dict[str, str]]], boundary: str) -> bytes:
    """Encode parts by hand: (disposition params after `form-data; `, body, extra headers)."""
    out = b""
    for disposition, body, headers in parts:
        head = f"Content-Disposition: form-data; {disposition}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        out += f"--{boundary}\r\n{head}\r\n".encode() + body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


# --- the SDK
def test_sdk_edit_two_files_and_mask(sdk, public_shim, reapi_state, key) -> None:
    """images.edit with two files and a mask: one task whose URLs fetch exactly the uploaded bytes."""
    first, second, hole = photo(), photo(colour=(10, 90, 200), fmt="JPEG"), mask()
    result = sdk(public_shim).images.edit(
        model="gpt-image-1",
        image=[("a.png", first, "image/png"), ("b.jpg", second, "image/jpeg")],
        mask=("mask.png", hole, "image/png"),
        prompt="[latency=0.1] add a hat",
        quality="low",
    )
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).format == "PNG"
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2-official" and task.body["prompt"] == "[latency=0.1] add a hat"
    urls = [*task.body["image_urls"], task.body["mask_url"]]
    assert all(url.startswith(public_shim.url + "/media/") for url in urls)
    assert urls[0].endswith(".png") and urls[1].endswith(".jpg")
    assert fetched_hashes(task) == [sha(first), sha(second), sha(hole)]


def test_sdk_edit_one_file_url_answer(sdk, public_shim, reapi_state, key) -> None:
    """One file (part `image`) on dall-e-2 answers a URL, and the upstream fetched that file."""
    source = photo((32, 32), fmt="WEBP")
    result = sdk(public_shim).images.edit(
        model="dall-e-2",
        image=("p.webp", source, "image/webp"),
        prompt="[latency=0.1] brighter",
        size="512x512",
    )
    assert result.data[0].url.startswith("http") and result.data[0].b64_json is None
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2" and len(task.body["image_urls"]) == 1
    assert fetched_hashes(task) == [sha(source)]


def test_sdk_create_variation(sdk, public_shim, reapi_state, key) -> None:
    """create_variation defaults to dall-e-2: n tasks with the neutral prompt and the uploaded image."""
    source = photo((48, 48))
    with pytest.warns(DeprecationWarning):  # the SDK marks the endpoint deprecated; it still works
        result = sdk(public_shim).images.create_variation(image=("v.png", source, "image/png"), n=2)
    assert len(result.data) == 2 and all(d.url for d in result.data)
    tasks = tasks_of(reapi_state, key)
    assert len(tasks) == 2
    for task in tasks:
        assert task.body["model"] == "gpt-image-2" and task.body["prompt"] == VARIATION_PROMPT
        assert fetched_hashes(task) == [sha(source)]


def test_sdk_streamed_edit(sdk, public_shim, key) -> None:
    """stream=True on an edit yields image_edit.completed events carrying the image."""
    stream = sdk(public_shim).images.edit(
        model="gpt-image-1", image=("a.png", photo(), "image/png"), prompt="[latency=0.1] s", stream=True
    )
    events = list(stream)
    assert [e.type for e in events] == ["image_edit.completed"] and events[0].b64_json


def test_sdk_retry_attaches_instead_of_paying_twice(sdk, public_shim, reapi_state, key) -> None:
    """A client timing out and retrying the same upload re-uses its media URL, so the retry attaches."""
    raw = sdk(public_shim, timeout=0.6, max_retries=8).images.with_raw_response.edit(
        model="gpt-image-1", image=("a.png", photo(), "image/png"), prompt="[latency=0.8] slow", quality="low"
    )
    assert raw.retries_taken >= 1 and raw.headers["x-shim-attached"] == "true"
    assert raw.parse().data[0].b64_json
    assert len(tasks_of(reapi_state, key)) == 1


# --- validation before spending
@pytest.mark.parametrize(
    ("files", "param", "needle"),
    [
        pytest.param({"mask": mask((32, 32))}, "mask", "same dimensions", id="mask-size"),
        pytest.param({"mask": photo()}, "mask", "alpha", id="mask-no-alpha"),
        pytest.param({"mask": encode(Image.new("RGBA", (64, 48), (0, 0, 0, 255)))}, "mask", "opaque", id="mask-opaque"),
        pytest.param({"mask": encode(Image.new("RGBA", (64, 48)), "WEBP")}, "mask", "PNG", id="mask-webp"),
        pytest.param({"image": b"just some text"}, "image", "not a valid", id="text-file"),
        pytest.param({"image": encode(Image.new("RGB", (8, 8)), "GIF")}, "image", "GIF", id="gif"),
        pytest.param({"image": photo()[:60]}, "image", "not a valid", id="truncated"),
    ],
)
def test_bad_files_cost_nothing(sdk, public_shim, reapi_state, key, files, param, needle) -> None:
    """A bad image or mask is a 400 naming the field, before any upload or upstream request."""
    payload = {"image": photo(), **files}
    sdk_files = {name: (f"{name}.bin", data, "application/octet-stream") for name, data in payload.items()}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(public_shim).images.edit(model="gpt-image-1", prompt="x", **sdk_files)
    assert caught.value.body["param"] == param and needle in caught.value.message
    assert reapi_state.counters(key)["requests"] == 0


@pytest.mark.parametrize("model", ["gpt-image-2", "reapi/gpt-image-2", "reve2img/reve-2.0"])
def test_mask_on_model_without_masks(sdk, public_shim, reapi_state, reve2img_state, key, model) -> None:
    """A mask sent to an explicit upstream id without masks is a 400 naming gpt-image-2-official, at no cost."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(public_shim).images.edit(
            model=model,
            image=("a.png", photo(), "image/png"),
            mask=("m.png", mask(), "image/png"),
            prompt="x",
        )
    assert caught.value.body["param"] == "mask" and "gpt-image-2-official" in caught.value.message
    assert caught.value.code == "unsupported_parameter"
    assert reapi_state.counters(key)["requests"] == 0 and reve2img_state.counters(key)["requests"] == 0


@pytest.mark.parametrize("model", [pytest.param("dall-e-2", id="dall-e-2"), pytest.param(None, id="no-model")])
def test_masked_edit_on_openais_default_edit_model(sdk, public_shim, reapi_state, key, model) -> None:
    """A masked edit on dall-e-2, or naming no model (OpenAI's default edit model is dall-e-2, classic
    inpainting), goes to gpt-image-2-official with the mask, and answers a URL as dall-e-2 does."""
    source, hole = photo(), mask()
    kw = {"model": model} if model else {}
    result = sdk(public_shim).images.edit(
        image=("a.png", source, "image/png"), mask=("m.png", hole, "image/png"), prompt="[latency=0.1] a hat", **kw
    )
    assert result.data[0].url and result.data[0].b64_json is None
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2-official" and task.body["mask_url"].startswith(public_shim.url)
    assert fetched_hashes(task) == [sha(source), sha(hole)]


def test_without_public_url_uploads_fail_fast(sdk, shim_server, reapi_state, key) -> None:
    """A shim with no SHIM_PUBLIC_URL refuses file uploads with a 400 naming it, and calls nobody."""
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(shim_server).images.edit(image=("a.png", photo(), "image/png"), prompt="x")
    assert "SHIM_PUBLIC_URL" in caught.value.message and caught.value.body["param"] == "image"
    assert reapi_state.counters(key)["requests"] == 0


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_cap_is_413(public_shim, reapi_state, key, chunked) -> None:
    """A body over SHIM_MAX_UPLOAD_BYTES is a 413, declared or streamed in chunks, with no upstream call."""
    body = multipart([('name="image"; filename="big.png"', b"\0" * (UPLOAD_CAP + 10_000), {})], "cap")

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 16_384):
            yield body[start : start + 16_384]

    response = httpx.post(
        public_shim.url + "/v1/images/edits",
        content=pieces() if chunked else body,
        headers={**auth(key), "Content-Type": "multipart/form-data; boundary=cap"},
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert reapi_state.counters(key)["requests"] == 0


def test_credential_is_checked_before_the_body(public_shim) -> None:
    """No key: 401, not 413, for a body over the cap (the credential is checked before the body is read)."""
    response = httpx.post(
        public_shim.url + "/v1/images/edits",
        content=iter([b"x" * UPLOAD_CAP, b"x" * UPLOAD_CAP]),
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        pytest.param("text/plain", b"hello", 415, "unsupported_media_type", id="text"),
        pytest.param("multipart/form-data", b"--x\r\n", 400, "invalid_multipart", id="no-boundary"),
        pytest.param("multipart/form-data; boundary=x", b"--x\r\nA: b\r\n\r\nv", 400, "invalid_multipart", id="open"),
        pytest.param("application/json", b'{"prompt": "x"}', 400, "missing_required_parameter", id="no-image"),
    ],
)
def test_malformed_requests(public_shim, reapi_state, key, content_type, body, status, code) -> None:
    """Bodies that are not a usable edit are rejected with the matching 4xx and no upstream call."""
    response = httpx.post(
        public_shim.url + "/v1/images/edits",
        content=body,
        headers={**auth(key), "Content-Type": content_type},
    )
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert reapi_state.counters(key)["requests"] == 0


# --- other clients' shapes, replayed
def test_open_webui_repeated_image_fields(public_shim, reapi_state, key) -> None:
    """Open WebUI's multipart (repeated image[], no mask, b64_json) without the /v1 prefix works."""
    first, second = photo(), photo(colour=(0, 0, 0))
    response = httpx.post(
        public_shim.url + "/images/edits",
        files=[("image[]", ("1.png", first, "image/png")), ("image[]", ("2.png", second, "image/png"))],
        data={"model": "gpt-image-1", "prompt": "[latency=0.1] merge", "n": "1", "size": "1024x1024"},
        headers=auth(key),
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["data"][0]["b64_json"]
    (task,) = tasks_of(reapi_state, key)
    assert fetched_hashes(task) == [sha(first), sha(second)]


def test_librechat_chunked_typed_parts(public_shim, reapi_state, key) -> None:
    """LibreChat's axios form-data, chunked with no Content-Length, with text parts carrying a charset."""
    source = photo()
    boundary = "--------------------------" + "".join(secrets.choice("0123456789") for _ in range(24))
    body = multipart(
        [
            ('name="image[]"; filename="img-1.png"', source, {"Content-Type": "image/png"}),
            (
                'name="prompt"',
                "[latency=0.1] café ☕".encode(),
                {"Content-Type": "text/plain; charset=utf-8"},
            ),
            ('name="user"', "José".encode("latin-1"), {"Content-Type": "text/plain; charset=iso-8859-1"}),
            ('name="model"', b"gpt-image-1", {}),
            ('name="quality"', b"auto", {}),
            ('name="size"', b"auto", {}),
            ('name="background"', b"auto", {}),
            ('name="output_format"', b"png", {}),
        ],
        boundary,
    )

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 100):
            yield body[start : start + 100]

    response = httpx.post(
        public_shim.url + "/v1/images/edits",
        content=chunks(),
        headers={**auth(key), "Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["b64_json"]
    (task,) = tasks_of(reapi_state, key)
    assert task.body["prompt"] == "[latency=0.1] café ☕"
    assert fetched_hashes(task) == [sha(source)]


@pytest.mark.parametrize("shape", ["openai", "reapi"])
def test_json_with_image_urls_passes_through(public_shim, shim_server, reapi_state, key, shape) -> None:
    """A JSON body with image URLs needs no media store: the URLs reach the upstream unchanged."""
    state = public_shim.app.state.shim
    hosted = [photo(), mask()]
    image_url, mask_url = [
        asyncio.run_coroutine_threadsafe(
            state.media.put(data, "image/png", "png", owner="test"), public_shim.loop
        ).result(timeout=5)
        for data in hosted
    ]
    if shape == "openai":
        body = {"images": [{"image_url": image_url}], "mask": {"image_url": mask_url}}
    else:
        body = {"image_urls": [image_url], "mask_url": mask_url}
    body |= {"model": "gpt-image-1", "prompt": "[latency=0.1] json", "quality": "low"}
    response = httpx.post(shim_server.url + "/v1/images/edits", json=body, headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    (task,) = tasks_of(reapi_state, key)
    assert (task.body["image_urls"], task.body["mask_url"]) == ([image_url], mask_url)
    assert fetched_hashes(task) == [sha(data) for data in hosted]


def test_json_data_url_is_uploaded(public_shim, reapi_state, key) -> None:
    """A data: URL in the JSON form is checked and uploaded like a file (the upstream refuses data: URLs)."""
    source = photo((16, 16))
    data_url = "data:image/png;base64," + base64.b64encode(source).decode()
    body = {"model": "gpt-image-1", "prompt": "[latency=0.1] d", "images": [{"image_url": data_url}]}
    response = httpx.post(public_shim.url + "/v1/images/edits", json=body, headers=auth(key), timeout=30)
    assert response.status_code == 200, response.text
    (task,) = tasks_of(reapi_state, key)
    assert task.body["image_urls"][0].startswith(public_shim.url + "/media/")
    assert fetched_hashes(task) == [sha(source)]


# --- the media URLs
def test_media_cannot_be_listed_or_guessed(sdk, public_shim, reapi_state, key) -> None:
    """/media/ lists nothing and a random token is a 404 in OpenAI's shape; an issued URL served the upstream
    the bytes while the task ran, and is released once the job is over."""
    for path in (
        "/media/",
        "/media",
        "/media/" + secrets.token_urlsafe(32) + ".png",
        "/media/..%2Fpyproject.toml",
    ):
        response = httpx.get(public_shim.url + path)
        assert response.status_code == 404, path
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    source = photo((24, 24))
    sdk(public_shim).images.edit(model="gpt-image-1", image=("a.png", source, "image/png"), prompt="[latency=0.1] m")
    (task,) = tasks_of(reapi_state, key)
    (fetched,) = task.fetched_inputs
    assert (fetched["status"], fetched["sha256"]) == (200, hashlib.sha256(source).hexdigest())
    assert httpx.get(task.body["image_urls"][0]).status_code == 404
    assert json.loads(httpx.get(public_shim.url + "/media/").text)["error"]["code"] == "not_found"


# --- the multipart parser, pure
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(["prompt", "model", "n", "user"]), st.lists(TEXT, min_size=1, max_size=2)),
    files=st.lists(st.binary(max_size=300), min_size=1, max_size=3),
)
def test_parser_reads_what_httpx_writes(fields, files) -> None:
    """Whatever fields and files httpx encodes as multipart come back as the same parts, in order."""
    uploads = [("image[]", (f"{i}.png", data, "image/png")) for i, data in enumerate(files)]
    request = httpx.Request("POST", "http://shim.test", data=fields, files=uploads)
    parts = parse_multipart(request.read(), request.headers["content-type"])
    expected = [(name, value.encode(), False) for name, values in fields.items() for value in values]
    expected += [("image[]", data, True) for data in files]
    assert [(p.name, p.data, p.is_file) for p in parts] == expected


def test_parser_preamble_rfc5987_and_typed_text() -> None:
    """A preamble and epilogue are skipped, filename* wins over filename, a JSON-typed part stays text."""
    body = (
        b"preamble\r\n--b\r\n"
        b'Content-Disposition: form-data; name="image"; filename="x.png"; filename*=UTF-8\'\'%C3%A9.png\r\n'
        b"Content-Type: image/png\r\n\r\nDATA\r\n--b\r\n"
        b'Content-Disposition: form-data; name="prompt"\r\nContent-Type: application/json\r\n\r\n"hi"\r\n'
        b"--b--\r\nepilogue"
    )
    parts = parse_multipart(body, 'multipart/form-data; boundary="b"')
    assert parts == [
        Part("image", b"DATA", "\u00e9.png", "image/png"),
        Part("prompt", b'"hi"', None, "application/json"),
    ]
    assert [p.is_file for p in parts] == [True, False]
