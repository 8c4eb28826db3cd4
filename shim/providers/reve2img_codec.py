"""reve2img's wire format, pure: jobs to /api/v1/generate bodies, status envelopes to Task, errors and
failed tasks (named by a NAME of the reference's error table, wherever it is) to ours.

The reference lists no model catalog (its category pages are not in our documents); the catalog below is
the one our emulator implements, and the README says so. Nor does it list aspect ratios, image_urls limits,
prompt lengths or output pixels: the shim invents none of them. It passes the client's values through and
maps the upstream's documented INVALID_PARAMETER back to a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import errors
from ..sizes import COMMON_RATIOS, nearest_ratio, parse_pixels
from ..types import ImageSpec, LatencyPrior, Spec, Submission, Task, TaskStatus
from ..untrusted import printable
from .base import SYNCHRONOUS_PRIOR, ModelSpec, spec_of, submitted_id, url_strings

#: Synchronous models (reve-2.0, "may return SUCCESS ... right away") and asynchronous ones.
CATALOG: dict[str, ModelSpec] = {
    spec.id: spec
    for spec in (ModelSpec("reve-2.0"), ModelSpec("reve-2.0-fast"), ModelSpec("flux-2"), ModelSpec("seedream-4.0"))
}
PRIORS: dict[str, LatencyPrior] = {
    "reve2img/reve-2.0": LatencyPrior(0.5, 2.0),
    "reve2img/reve-2.0-fast": LatencyPrior(0.5, 1.0),
    "reve2img/flux-2": LatencyPrior(10, 20),
    "reve2img/seedream-4.0": LatencyPrior(20, 40),
}


def priors(models: Mapping[str, ModelSpec]) -> dict[str, LatencyPrior]:
    """The priors of declared models: their `latency`, or near zero for a synchronous one (the others, and
    pass-through ids, have none: they borrow from their relatives, else the whole range)."""
    found = {}
    for model, spec in models.items():
        declared = spec.latency or (SYNCHRONOUS_PRIOR if spec.synchronous else None)
        if declared is not None:
            found[f"reve2img/{model}"] = declared
    return found


STATUSES: dict[str, TaskStatus] = {"IN_PROGRESS": "processing", "SUCCESS": "completed", "FAILED": "failed"}
#: The reference's error table, NAME -> HTTP status ("Errors return the HTTP status code in both the HTTP
#: response and `code`, with a machine-readable `message`").
ERROR_STATUS: dict[str, int] = {
    "INVALID_PROMPT": 400, "INVALID_MODEL": 400, "INVALID_PARAMETER": 400, "CONTENT_POLICY_VIOLATION": 400,
    "INVALID_API_KEY": 401, "INSUFFICIENT_CREDITS": 402, "TASK_NOT_FOUND": 404, "RATE_LIMITED": 429,
    "TOO_MANY_TASKS": 429, "GENERATION_FAILED": 500, "SERVICE_UNAVAILABLE": 503, "TIMEOUT": 504,
}  # fmt: skip
#: A bare HTTP status -> the NAME it stands for when no NAME came with it (400 and 429 have several; the
#: generic one is chosen, and moderation is recognised by its words).
STATUS_NAMES: dict[int, str] = {
    400: "INVALID_PARAMETER", 401: "INVALID_API_KEY", 402: "INSUFFICIENT_CREDITS", 404: "TASK_NOT_FOUND",
    429: "RATE_LIMITED", 500: "GENERATION_FAILED", 503: "SERVICE_UNAVAILABLE", 504: "TIMEOUT",
}  # fmt: skip


def aspect_ratio(size: str | None) -> str | None:
    """OpenAI size -> aspect_ratio: a ratio as given, WxH as the nearest of the common ratios
    (`sizes.COMMON_RATIOS`); None (the upstream's default) for auto/absent. Which ratios a model takes is the
    upstream's to say: an unsupported one comes back as INVALID_PARAMETER, never silently replaced."""
    if size is None or size == "auto":
        return None
    pixels = parse_pixels(size)
    if pixels is None:
        return size
    return nearest_ratio(pixels[0], pixels[1], COMMON_RATIOS)


def _image(job: Spec) -> ImageSpec:
    """reve2img makes images only (its catalog holds no video model, so routing never sends it one)."""
    if not isinstance(job, ImageSpec):
        raise errors.InvalidRequest(
            f"Model '{job.route.public_id}' makes images, not videos.", param="model", code="invalid_value"
        )
    return job


def check(spec: Spec, catalog: Mapping[str, ModelSpec] = CATALOG) -> None:
    """What reve2img cannot take (masks), refused before anything is stored or spent (an id outside
    `catalog`, passed through, is held to the conservative profile)."""
    job = _image(spec)
    model = spec_of(catalog, job.route.upstream_model)
    if job.mask_url:
        raise errors.InvalidRequest(
            f"'mask' is not supported by model '{job.route.public_id}'. Use gpt-image-2-official "
            "(or its alias gpt-image-1) for masks.",
            param="mask",
            code="unsupported_parameter",
        )
    if len(job.image_urls) > model.max_image_urls:
        raise errors.InvalidRequest(
            f"Model '{job.route.public_id}' accepts at most {model.max_image_urls} input images.",
            param="image",
            code="invalid_value",
        )


def plan(spec: Spec, catalog: Mapping[str, ModelSpec] = CATALOG) -> list[Submission]:
    """One task per image (the API makes one image per task)."""
    check(spec, catalog)
    job = _image(spec)
    model = job.route.upstream_model
    ratio = aspect_ratio(job.size)
    body: dict[str, Any] = {"model": model, "prompt": job.prompt}
    if ratio:
        body["aspect_ratio"] = ratio
    if job.image_urls:
        body["image_urls"] = list(job.image_urls)
    # The output pixels are not documented: the size is reported only when read from a downloaded image.
    return [Submission(body, 1, f"reve2img/{model}", None, None, "opaque") for _ in range(job.n)]


def parse_submitted(data: Mapping[str, Any]) -> Task:
    """The `data` of a generate answer -> Task (SubmitOutcomeUnknown for an id we cannot keep)."""
    return parse_task(data, submitted_id(data.get("task_id")))


def parse_task(data: Mapping[str, Any], task_id: str) -> Task:
    """The `data` of a generate or status answer -> Task (named `task_id`).

    An undocumented status is not a failure: with result URLs it is a success (paid for), without them the
    poll is repeated; so is SUCCESS without a usable URL, until it has been said three times in a row.
    """
    raw_status = data.get("status")
    status = STATUSES.get(raw_status) if isinstance(raw_status, str) else None
    raw_response = data.get("response")
    response: Mapping[str, Any] = raw_response if isinstance(raw_response, Mapping) else {}
    urls = url_strings(response.get("resultUrls"))
    raw_error = data.get("error")
    error: Mapping[str, Any] = raw_error if isinstance(raw_error, Mapping) else {}
    credits = data.get("consumed_credits")
    if status is None and urls:
        status = "completed"
    if status == "completed" and not urls:
        raise errors.UpstreamTransient(
            "SUCCESS without resultUrls",
            final=errors.UpstreamError(
                f"The upstream reports task {printable(task_id, 100)} SUCCESS but gives no usable result URL; "
                "it may have been charged: check the upstream dashboard."
            ),
        )
    if status is None:
        raise errors.UpstreamTransient(f"unknown task status {printable(raw_status, 40)!r}")
    name, text = read_failure(error) if status == "failed" else (None, None)
    return Task(
        id=task_id,
        status=status,
        urls=urls,
        error_code=name,
        error_message=None if text is None else printable(text, 500),
        credits=credits if isinstance(credits, int) and not isinstance(credits, bool) and credits >= 0 else None,
    )


def _status_of(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def read_failure(error: Mapping[str, Any]) -> tuple[str, str | None]:
    """A FAILED task's `data.error` ("contains a code and message") -> (NAME, the rest of its text).

    The reference does not say which field holds the NAME, so every reading is accepted: the NAME in `code`
    (`{"code": "TIMEOUT", "message": "..."}`); the HTTP status in `code` and the NAME in `message`, as in
    its error envelope (`{"code": 504, "message": "TIMEOUT"}`); a status alone (`{"code": 504}`); or text
    that names nothing (`GENERATION_FAILED`, or `CONTENT_POLICY_VIOLATION` when it speaks of moderation).
    """
    fields = [error.get(name) for name in ("code", "message", "detail")]
    texts = [str(value).strip() for value in fields if value is not None and str(value).strip()]
    name = next((t.upper() for t in texts if t.upper() in ERROR_STATUS), None)
    status = next((s for s in map(_status_of, fields[:2]) if s is not None), None)
    rest = [t for t in texts if t.upper() != name and _status_of(t) is None]
    if name is None:
        words = " ".join(rest).lower()
        if "moderat" in words or "content polic" in words:
            name = "CONTENT_POLICY_VIOLATION"
        else:
            name = STATUS_NAMES.get(status or 500, "GENERATION_FAILED")
    detail = "; ".join(rest)
    if status is not None:
        detail = f"{detail} (code {status})" if detail else f"code {status}"
    return name, detail or None


def task_failure(task: Task) -> errors.ShimError:
    """A FAILED task -> the client's error (failed tasks are not charged)."""
    code = task.error_code or "GENERATION_FAILED"
    detail = f"upstream task {task.id} failed with reve2img {code}: {task.error_message or 'no message'}"
    if code == "CONTENT_POLICY_VIOLATION":
        return errors.ContentPolicyViolation(f"The output was rejected by content moderation ({detail}).")
    status = {"TIMEOUT": 504, "SERVICE_UNAVAILABLE": 503}.get(code, 502)
    return errors.TaskFailed(f"{detail}. Failed tasks are not charged.", status=status, task_id=task.id)


#: Wire fields an INVALID_PARAMETER detail may name -> the OpenAI parameter they came from.
_FIELDS = (("aspect_ratio", "size"), ("image_urls", "image"), ("prompt", "prompt"), ("model", "model"))


def _param_of(detail: str) -> str | None:
    lowered = detail.lower()
    return next((param for field, param in _FIELDS if field in lowered), None)


def map_error(status: int, payload: object, retry_after: float, *, submitting: bool) -> Exception:
    """An error answer -> ours, by its NAME (the HTTP status when the name is unknown)."""
    body = payload if isinstance(payload, Mapping) else {}
    # The envelope puts the NAME in `message`; a NAME found in `code` instead is read the same way.
    candidates = (str(body.get(field) or "").strip().upper() for field in ("message", "code"))
    name = next((c for c in candidates if c in ERROR_STATUS), printable(body.get("message") or "", 60))
    detail = printable(body.get("detail") or name or f"HTTP {status}", 500)
    upstream = f"reve2img {status} {name}: {detail}"
    if name in ("RATE_LIMITED", "TOO_MANY_TASKS") or status == 429:
        return errors.UpstreamRateLimited(retry_after, reason=name.lower() or "rate_limited")
    if name == "INVALID_API_KEY" or status in (401, 403):
        return errors.AuthenticationFailed(f"Incorrect API key provided: the upstream rejected it ({upstream}).")
    if name == "CONTENT_POLICY_VIOLATION":
        return errors.ContentPolicyViolation(
            f"Your request was rejected by the upstream's safety system ({upstream}). No credits were charged."
        )
    if name == "INSUFFICIENT_CREDITS" or status == 402:
        return errors.InsufficientQuota(
            f"You exceeded your current quota: the upstream account has insufficient credits ({upstream}). "
            "Top up the reve2img balance; retrying will not help."
        )
    if name == "INVALID_MODEL":  # "Unknown or missing model", and the shim always sends one
        return errors.ModelNotFound(
            f"The model does not exist upstream or you do not have access to it ({upstream}).", param="model"
        )
    if name in ("INVALID_PROMPT", "INVALID_PARAMETER") or status == 400:
        param = {"INVALID_PROMPT": "prompt"}.get(name) or _param_of(detail)
        return errors.InvalidRequest(
            f"The upstream rejected the request ({upstream}).", param=param, code="invalid_value"
        )
    if name == "TASK_NOT_FOUND" or status == 404:
        return errors.UpstreamError(f"The upstream does not know this task ({upstream}).")
    if submitting:
        if name == "GENERATION_FAILED" or status == 500:
            # Documented as "Internal error. Safe to retry.": no task was created; the client may retry.
            return errors.UpstreamError(f"The upstream failed to start the task ({upstream}).")
        if name == "SERVICE_UNAVAILABLE" or status == 503:
            return errors.UpstreamUnavailable(f"The upstream model is temporarily unavailable ({upstream}).")
        if name == "TIMEOUT" or status == 504:
            return errors.SubmitOutcomeUnknown(
                f"The upstream timed out on the submit ({upstream}); a task may exist, so it is not resubmitted."
            )
    return errors.UpstreamTransient(upstream)
