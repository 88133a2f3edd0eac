"""Retrying failed API calls.

The policy is ours rather than the SDKs' (their own retries are switched off), so that every
wait is logged and reaches the progress display: a week-long evaluation that is waiting on a
rate limit must not look stuck.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel, Field

from harness.models.base import ModelError

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


class IncompleteResponse(Exception):
    """An answer that arrived without its end: a stream cut short, a completion with no choices."""


def common_failure(exc: BaseException) -> Failure | None:
    """Failures that look the same whichever SDK raised them."""
    if isinstance(exc, IncompleteResponse):
        return Failure(f"incomplete response ({exc})", retryable=True)
    if isinstance(exc, json.JSONDecodeError):
        # A proxy or an overloaded server answering with a broken body; the next try usually works.
        return Failure("malformed response (body is not valid JSON)", retryable=True)
    return None


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
        reason += f": {_one_line(message)}"

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


def _one_line(text: str, limit: int = 300) -> str:
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


def call_with_retries(
    call: Callable[[], T],
    *,
    classify: Callable[[BaseException], Failure | None],
    settings: RetrySettings,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    on_status: Callable[[str], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Run `call`, retrying transient failures; raise `ModelError` for the rest.

    `classify` turns an exception into a `Failure`, or None for one that is not about the
    API (a bug), which propagates untouched.
    """
    rng = rng or random.Random()
    retries = 0
    while True:
        try:
            return call()
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            if not failure.retryable:
                raise ModelError(failure.reason, permanent=True) from exc
            if retries >= settings.max_retries:
                raise ModelError(f"{failure.reason} (gave up after {retries} retries)", permanent=False) from exc
            wait = backoff(retries, failure.retry_after_s, settings, rng)
            retries += 1
            status = f"{failure.reason}, retrying in {_seconds(wait)} ({retries}/{settings.max_retries})"
            log.warning("%s: %s", what, status)
            if on_status is not None:
                on_status(status)
            sleep(wait)


def backoff(retries: int, retry_after_s: float | None, settings: RetrySettings, rng: random.Random) -> float:
    """The wait before retry number `retries + 1`.

    Full jitter (a uniform draw below the exponential bound) keeps parallel workers that hit
    the same limit from retrying in lockstep. A server's `Retry-After` is a floor, with a
    little jitter on top for the same reason.
    """
    if retry_after_s is not None:
        wait = retry_after_s + rng.uniform(0, settings.retry_base_s)
    else:
        wait = rng.uniform(0, settings.retry_base_s * 2**retries)
    return min(wait, settings.retry_max_wait_s)


def _seconds(wait: float) -> str:
    return f"{wait:.0f} s" if wait >= 10 else f"{wait:.1f} s"


def describe_exception(exc: BaseException) -> str:
    """A one-line account of a low-level failure, with its cause when the SDK wrapped one."""
    cause = exc.__cause__ or exc.__context__
    text = str(exc) or type(exc).__name__
    if cause is not None and str(cause) and str(cause) not in text:
        text += f" ({_one_line(str(cause), 120)})"
    return _one_line(text, 200)
