"""The error tree. Every failure a client can see is one of these; `openai_wire.render_error` renders it.

    ShimError                      status, OpenAI type/code/param, retry advice
    ├── InvalidRequest             400 invalid_request_error (param names the field)
    │   ├── PromptTooLong          400 string_above_max_length (the wire's or a model's limit)
    │   ├── ClientDisconnected     the client left mid-body (nobody reads it)
    │   ├── ContentPolicyViolation 400 code content_policy_violation
    │   ├── PayloadTooLarge        413
    │   └── UnsupportedMediaType   415
    ├── AuthenticationFailed       401 invalid_api_key (never an upstream call when the key is missing)
    ├── NotFound                   404 (ModelNotFound: code model_not_found)
    ├── InsufficientQuota          429 insufficient_quota, x-should-retry: false
    ├── RetryLater                 503 + Retry-After + x-should-retry: true (the hold budget ran out)
    ├── ShuttingDown               503 (draining)
    ├── MediaStoreFull             503, x-should-retry: true (the upload store is at its cap)
    ├── StateUnavailable           503, x-should-retry: true: the shared state (Redis) cannot record a job
    ├── UploadQuotaExceeded        429, x-should-retry: true (this key's share of the upload store is used)
    ├── RequestTimeout             408 (the client sent its body too slowly)
    └── UpstreamError              502 upstream_error
        ├── TaskFailed             502 (provider failure) or 504 (provider timeout), names the task
        ├── SubmitOutcomeUnknown   502, x-should-retry: false: a task may exist, never resubmit
        ├── UpstreamUnavailable    503
        └── TaskTimeout            504: the shim's own wall-clock cap for a task

Signals between the adapters and the scheduler, never rendered as such:

    UpstreamRateLimited            429 from the upstream: no task was created, retry after `retry_after`
    UpstreamTransient              a network error / 5xx on a call that is safe to repeat
"""

from __future__ import annotations


class ShimError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    #: None: leave the SDKs' default; True/False: send x-should-retry.
    should_retry: bool | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        upstream_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after
        self.upstream_request_id = upstream_request_id
        #: Headers the edge adds to the rendered error (the job id, say); never secrets.
        self.headers: dict[str, str] = {}

    def redact(self, secret: str) -> ShimError:
        """Remove a secret an upstream may have echoed into the message or its request id (keys never reach a
        client or a log)."""
        if secret and secret in self.message:
            self.message = self.message.replace(secret, "[redacted]")
            self.args = (self.message,)
        if secret and self.upstream_request_id and secret in self.upstream_request_id:
            self.upstream_request_id = self.upstream_request_id.replace(secret, "[redacted]")
        return self


class InvalidRequest(ShimError):
    status = 400
    type = "invalid_request_error"


class PromptTooLong(InvalidRequest):
    """OpenAI's error for a prompt over a limit: the wire's own, or a model's."""

    code = "string_above_max_length"

    def __init__(self, length: int, limit: int, model: str | None = None) -> None:
        where = f" for model '{model}'" if model else ""
        super().__init__(
            f"Invalid 'prompt': string too long. Expected a string with maximum length {limit}{where}, "
            f"but got a string with length {length} instead.",
            param="prompt",
        )


class ClientDisconnected(InvalidRequest):
    """The client went away mid-request: nobody reads this answer (logged at info, not as an error)."""

    code = "client_disconnected"


class ContentPolicyViolation(InvalidRequest):
    code = "content_policy_violation"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    status = 415
    code = "unsupported_media_type"


class AuthenticationFailed(ShimError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class NotFound(ShimError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class InsufficientQuota(ShimError):
    status = 429
    type = "insufficient_quota"
    code = "insufficient_quota"
    should_retry = False


class RetryLater(ShimError):
    status = 503
    type = "server_error"
    code = "job_pending"
    should_retry = True


class ShuttingDown(ShimError):
    status = 503
    type = "server_error"
    code = "shutting_down"


class MediaStoreFull(ShimError):
    """The in-memory upload store holds its cap of live uploads: retry once some expire."""

    status = 503
    type = "server_error"
    code = "media_store_full"
    should_retry = True


class StateUnavailable(ShimError):
    """The replicas' shared state (SHIM_REDIS_URL) is unreachable: nothing is submitted without a record there,
    so a new job waits for it to come back (retryable; nothing was charged)."""

    status = 503
    type = "server_error"
    code = "state_unavailable"
    should_retry = True


class UploadQuotaExceeded(ShimError):
    """This credential's live uploads fill its share of the media store: retry once its jobs finish."""

    status = 429
    type = "requests"
    code = "upload_quota_exceeded"
    should_retry = True


class RequestTimeout(ShimError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class UpstreamError(ShimError):
    status = 502
    type = "server_error"
    code = "upstream_error"


class TaskFailed(UpstreamError):
    """`upstream_code` is the upstream's own code for the failure ("80003"), when it gave one."""

    code = "upstream_task_failed"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        task_id: str | None = None,
        upstream_code: str | None = None,
        **kw: object,
    ) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.status = status
        self.task_id = task_id
        self.upstream_code = upstream_code


class SubmitOutcomeUnknown(UpstreamError):
    code = "upstream_submit_unknown"
    should_retry = False


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"


class TaskTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamRateLimited(Exception):
    """The upstream said 429: nothing was created; wait `retry_after` seconds and try again."""

    def __init__(self, retry_after: float, *, reason: str = "rate_limited") -> None:
        super().__init__(f"upstream {reason}, retry after {retry_after:g}s")
        self.retry_after = retry_after
        self.reason = reason


class UpstreamTransient(Exception):
    """A failure of a call that is safe to repeat (a poll): network error, timeout, 5xx, an unreadable answer.

    `final`: the error to give up with once the same answer came `patience` times in a row (an upstream that
    keeps saying "completed" with no result); None: retry until the task's cap.
    """

    def __init__(self, message: str, *, final: ShimError | None = None, patience: int = 3) -> None:
        super().__init__(message)
        self.final = final
        self.patience = patience
