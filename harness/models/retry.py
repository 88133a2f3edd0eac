"""Retrying failed API calls, with tenacity.

The policy is ours rather than the SDKs' (their own retries are switched off), so that every
wait is logged and reaches the progress display: a week-long evaluation that is waiting on a
rate limit must not look stuck. A server's `Retry-After` is honoured; without one the waits
are full-jitter exponential backoff.

What a failure *is* (its one-line reason, whether waiting can help) is decided by
`classify_sdk_error`, which both official SDKs share: they raise the same error classes.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import TypeVar

import tenacity
from pydantic import BaseModel, Field

from harness.models.contract import ModelError

log = logging.getLogger(__name__)

T = TypeVar("T")


class RetrySettings(BaseModel):
    """The retry part of a provider's `--model-arg` settings."""

    max_retries: int = Field(default=6, ge=0)
    #: Scale of the exponential backoff: the n-th wait is drawn from [0, base * 2**n).
    retry_base_s: float = Field(default=1.0, gt=0)
    #: Cap on one wait, `Retry-After` included, so a bogus header cannot park a worker for hours.
    retry_max_wait_s: float = Field(default=120.0, gt=0)


@dataclass(frozen=True)
class Failure:
    """One failed attempt, described in the terms the policy needs."""

    reason: str
    retryable: bool
    retry_after_s: float | None = None


_STATUS_NAMES = {
    400: "bad request",
    401: "authentication failed",
    402: "payment required",
    403: "permission denied",
    404: "not found",
    408: "request timeout",
    409: "conflict",
    413: "request too large",
    422: "unprocessable request",
    429: "rate limited",
    500: "server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
    529: "overloaded",
}

# An error inside a stream that began with 200 has only its body's type to go by.
_TRANSIENT_TYPES = {
    "overloaded_error": "overloaded",
    "rate_limit_error": "rate limited",
    "api_error": "server error",
    "server_error": "server error",
    "timeout_error": "timed out",
}
# OpenAI answers an exhausted account with 429 too; waiting does not refill it.
_PERMANENT_CODES = {"insufficient_quota", "billing_hard_limit_reached"}
# The transport errors of the SDKs' HTTP library reach us unwrapped once a stream has begun;
# they are recognised by class name so that the library itself need not be imported.
_TRANSPORT_CLASSES = {"TransportError", "NetworkError", "ProtocolError", "TimeoutException"}


class IncompleteResponse(Exception):
    """An answer that arrived without its end: a stream cut short, a completion with no choices."""


def not_a_stream(content_type: str) -> Exception:
    """What to raise for a streamed request whose response carried no events."""
    if "json" in content_type:
        # Some gateways and proxies cannot stream: asking again the same way cannot help.
        return ModelError(
            "the server answered a streamed request with a plain JSON body (a gateway that cannot stream?); "
            "set --model-arg stream=false for it",
            permanent=True,
        )
    return IncompleteResponse(f"the stream carried no events (content type {content_type or 'none'})")


def classify_sdk_error(exc: BaseException, sdk: ModuleType) -> Failure:
    """What went wrong in one call through the official SDK `sdk` (the `openai` or `anthropic` module).

    Every exception gets a reason: one that is not the SDK's own (an assertion inside it, a
    bug in a gateway's answer) is a failure of this call, never of the evaluation.
    """
    if isinstance(exc, sdk.APIStatusError):
        return status_failure(exc.status_code, exc.response.headers, exc.body)
    if isinstance(exc, sdk.APITimeoutError):
        return Failure("request timed out", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return Failure(f"connection failed: {describe_exception(exc)}", retryable=True)
    if isinstance(exc, sdk.APIResponseValidationError):
        return Failure("malformed response (does not match the API's schema)", retryable=True)
    if isinstance(exc, IncompleteResponse):
        return Failure(f"incomplete response ({exc})", retryable=True)
    if isinstance(exc, json.JSONDecodeError):
        # A proxy or an overloaded server answering with a broken body; the next try usually works.
        return Failure("malformed response (body is not valid JSON)", retryable=True)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"TimeoutException"} or isinstance(exc, TimeoutError):
        return Failure("stream timed out", retryable=True)
    if names & _TRANSPORT_CLASSES or isinstance(exc, ConnectionError):
        return Failure(f"connection dropped mid-response: {describe_exception(exc)}", retryable=True)
    if isinstance(exc, sdk.APIError):
        return Failure(describe_exception(exc), retryable=False)
    # Not the SDK's error nor the network's: the same request would fail the same way.
    return Failure(f"unexpected {type(exc).__name__} from the SDK: {describe_exception(exc)}", retryable=False)


def status_failure(status: int, headers: Mapping[str, str], body: object) -> Failure:
    """Classify an error response (both vendors use the `{"error": {"type", "message"}}` body shape).

    `status` is below 400 for an error that arrived inside a stream that had started well.
    """
    error_type, code, message = _error_fields(body)
    if status < 400:
        name, where = _TRANSIENT_TYPES.get(error_type or "", "error"), "mid-stream"
    else:
        name, where = _STATUS_NAMES.get(status) or ("server error" if status >= 500 else "error"), str(status)
        if error_type == "overloaded_error":
            name = "overloaded"  # whatever status a gateway wrapped it in
    reason = f"{name} ({where})"
    if message:
        reason += f": {one_line(message)}"

    should_retry = (headers.get("x-should-retry") or "").lower()
    if code in _PERMANENT_CODES or error_type in _PERMANENT_CODES:
        retryable = False
    elif should_retry in ("true", "false"):
        # The server's explicit word beats our reading of the status code.
        retryable = should_retry == "true"
    else:
        retryable = (
            status in (408, 409, 429)
            or status >= 500
            or error_type == "overloaded_error"
            or (status < 400 and (error_type or "") in _TRANSIENT_TYPES)
        )
    return Failure(reason, retryable, parse_retry_after(headers) if retryable else None)


def _error_fields(body: object) -> tuple[str | None, str | None, str | None]:
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            return _str(inner.get("type")), _str(inner.get("code")), _str(inner.get("message"))
        if isinstance(inner, str):
            return None, None, inner
    if isinstance(body, str) and body.strip():
        return None, None, body
    return None, None, None


def _str(value: object) -> str | None:
    return None if value is None else str(value)


def one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait as the server asked: `retry-after-ms`, or `Retry-After` in seconds or as a date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class _Retry(Exception):
    """A retryable failure, as tenacity sees it."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.reason)
        self.failure = failure


class wait_retry_after(tenacity.wait.wait_base):
    """The server's `Retry-After` as a floor (with a little jitter on top, so parallel workers
    that hit the same limit do not retry in lockstep), else `fallback`; capped at `cap_s`."""

    def __init__(self, fallback: tenacity.wait.wait_base, jitter_s: float, cap_s: float, rng: random.Random) -> None:
        self.fallback, self.jitter_s, self.cap_s, self.rng = fallback, jitter_s, cap_s, rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        after = exc.failure.retry_after_s if isinstance(exc, _Retry) else None
        wait = after + self.rng.uniform(0, self.jitter_s) if after is not None else self.fallback(retry_state)
        return min(wait, self.cap_s)


class _FullJitter(tenacity.wait.wait_base):
    """Full jitter (a uniform draw below the exponential bound), from an injectable generator."""

    def __init__(self, base_s: float, rng: random.Random) -> None:
        self.base_s, self.rng = base_s, rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self.rng.uniform(0, self.base_s * 2 ** (retry_state.attempt_number - 1))


def retry_wait(settings: RetrySettings, rng: random.Random | None = None) -> tenacity.wait.wait_base:
    rng = rng or random.Random()
    return wait_retry_after(
        _FullJitter(settings.retry_base_s, rng), settings.retry_base_s, settings.retry_max_wait_s, rng
    )


def call_with_retries(
    call: Callable[[], T],
    *,
    classify: Callable[[BaseException], Failure],
    settings: RetrySettings,
    what: str,
    sleep: Callable[[float], None],
    on_status: Callable[[str], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Run `call`, retrying transient failures; raise `ModelError` for the rest and when retries run out."""

    def attempt() -> T:
        try:
            return call()
        except ModelError:
            raise
        except Exception as exc:
            failure = classify(exc)
            if not failure.retryable:
                raise ModelError(failure.reason, permanent=True) from exc
            raise _Retry(failure) from exc

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = exc.failure.reason if isinstance(exc, _Retry) else str(exc)
        wait = state.next_action.sleep if state.next_action else 0.0
        status = f"{reason}, retrying in {_seconds(wait)} ({state.attempt_number}/{settings.max_retries})"
        log.warning("%s: %s", what, status)
        if on_status is not None:
            on_status(status)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.max_retries + 1),
        wait=retry_wait(settings, rng),
        retry=tenacity.retry_if_exception_type(_Retry),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _Retry as exc:
        raise ModelError(
            f"{exc.failure.reason} (gave up after {settings.max_retries} retries)", permanent=False
        ) from exc.__cause__


def _seconds(wait: float) -> str:
    return f"{wait:.0f} s" if wait >= 10 else f"{wait:.1f} s"


def describe_exception(exc: BaseException) -> str:
    """A one-line account of a low-level failure, with its cause when the SDK wrapped one."""
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({one_line(str(cause), 120)})"
    return one_line(text, 200)
