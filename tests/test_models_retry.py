"""The retry policy itself: waits, `Retry-After`, and what is retried (through tenacity)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
import tenacity

from harness.models import ModelError
from harness.models.retry import Failure, RetrySettings, call_with_retries, parse_retry_after, retry_wait


def test_waits_are_full_jitter_below_an_exponential_bound_and_capped() -> None:
    settings = RetrySettings(retry_base_s=1.0, retry_max_wait_s=20.0)
    wait = retry_wait(settings, random.Random(0))
    for attempt in range(1, 9):
        state = tenacity.RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        for _ in range(50):
            assert 0 <= wait(state) <= min(2 ** (attempt - 1), 20.0)


def test_retry_after_is_a_floor_and_capped() -> None:
    settings = RetrySettings(retry_base_s=0.5, retry_max_wait_s=20.0, max_retries=3)
    waits: list[float] = []
    answers = iter(["429", "429", "done"])

    def call() -> str:
        out = next(answers)
        if out == "429":
            raise RuntimeError(out)
        return out

    failures = iter([Failure("rate limited", True, 3.0), Failure("rate limited", True, 500.0)])
    statuses: list[str] = []
    result = call_with_retries(
        call,
        classify=lambda exc: next(failures),
        settings=settings,
        what="test",
        sleep=waits.append,
        on_status=statuses.append,
    )
    assert result == "done"
    assert 3.0 <= waits[0] <= 3.5 and waits[1] == 20.0
    assert statuses[1] == "rate limited, retrying in 20 s (2/3)"


def test_a_permanent_failure_is_raised_at_once_and_keeps_its_cause() -> None:
    def call() -> str:
        raise ValueError("boom")

    waits: list[float] = []
    with pytest.raises(ModelError, match=r"^bad request$") as info:
        call_with_retries(
            call,
            classify=lambda exc: Failure("bad request", False),
            settings=RetrySettings(),
            what="t",
            sleep=waits.append,
        )
    assert info.value.permanent and waits == [] and isinstance(info.value.__cause__, ValueError)


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 12:00:42 GMT"}, now=now) == 42.0
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 11:00:00 GMT"}, now=now) == 0.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
