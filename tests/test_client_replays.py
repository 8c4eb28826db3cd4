"""Replays of real clients, built from their public source: each test sends exactly what the client sends
(through the same SDK where it uses one, or the same raw HTTP) and reads exactly what it reads, against the
shim served by uvicorn with the emulators as upstreams. No client code is copied, only its wire behaviour.
"""

from __future__ import annotations

import base64
import io

from PIL import Image


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def tasks_of(state, key: str) -> list:
    return [t for t in state.tasks.values() if t.key == key]


# --- Dify's OpenAI plugin, tools/openai/tools/gpt_image_generate.py ----------------------------------------
def test_dify_gpt_image_tool_reads_usage(sdk, shim_server, reapi_state, key) -> None:
    """Dify's GPT Image tool (model gpt-image-1, size and quality only when not auto, n always) reads
    usage.total_tokens, input/output tokens and input_tokens_details, then each b64_json."""
    client = sdk(shim_server, key)  # Dify appends /v1 to the configured base URL itself
    response = client.images.generate(model="gpt-image-1", prompt="[latency=0.1] a lighthouse", quality="low", n=1)
    usage = response.usage  # the tool does `usage = response.usage; usage.total_tokens` after hasattr()
    token_usage = {
        "total_tokens": usage.total_tokens,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "input_tokens_details": {
            "text_tokens": usage.input_tokens_details.text_tokens,
            "image_tokens": usage.input_tokens_details.image_tokens,
        },
    }
    assert token_usage == {
        "total_tokens": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "input_tokens_details": {"text_tokens": 0, "image_tokens": 0},
    }
    assert usage.output_tokens_details is not None and usage.output_tokens_details.image_tokens == 0
    blobs = [base64.b64decode(image.b64_json) for image in response.data if image.b64_json]
    assert len(blobs) == 1 and decode(response.data[0].b64_json).format == "PNG"
    (task,) = tasks_of(reapi_state, key)
    assert task.body["model"] == "gpt-image-2-official" and task.body["quality"] == "low"


def test_dall_e_answers_carry_no_usage(sdk, shim_server, key) -> None:
    """A DALL-E id answers without usage, as OpenAI's DALL-E models did."""
    raw = sdk(shim_server, key).images.with_raw_response.generate(model="dall-e-3", prompt="[latency=0.1] a fox")
    assert "usage" not in raw.http_response.json() and raw.parse().data[0].url
