"""Every LLM request and response of a node, saved as it happens.

`transcript.jsonl` is for machines (the `replay` provider serves it back); `transcript.md`
beside it is the same conversation for a person to read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from harness.models.base import CallContext, Completion, Message, Model, ModelError, Usage

TRANSCRIPT_JSONL = "transcript.jsonl"
TRANSCRIPT_MD = "transcript.md"


class Exchange(BaseModel):
    """One model call: what was asked, with which settings, and what came back (or the error)."""

    schema_version: int = 1
    task_id: str
    node: int | None = None
    attempt: int = 0
    purpose: str = "code"
    model: str
    settings: dict[str, Any] = Field(default_factory=dict)
    messages: list[Message]
    completion: Completion | None = None
    error: str | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    latency_s: float = 0.0


_lock = threading.Lock()


def append_exchange(node_dir: Path, exchange: Exchange) -> None:
    node_dir.mkdir(parents=True, exist_ok=True)
    with _lock:
        with open(node_dir / TRANSCRIPT_JSONL, "a") as f:
            f.write(exchange.model_dump_json() + "\n")
        with open(node_dir / TRANSCRIPT_MD, "a") as f:
            f.write(_render(exchange))


def read_exchanges(node_dir: Path) -> list[Exchange]:
    path = node_dir / TRANSCRIPT_JSONL
    if not path.is_file():
        return []
    return [Exchange.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def _render(ex: Exchange) -> str:
    head = f"# node {ex.node} · {ex.purpose} · attempt {ex.attempt} · {ex.model} · {ex.started_at:%Y-%m-%d %H:%M:%S}Z\n"
    parts = [head, f"settings: `{ex.settings}`\n"]
    for msg in ex.messages:
        parts.append(f"\n## {msg.role}\n\n{msg.content}\n")
    if ex.completion is not None:
        u = ex.completion.usage
        parts.append(
            f"\n## assistant (response, {ex.latency_s:.1f}s, in {u.input_tokens} / out {u.output_tokens} tokens,"
            f" ${u.cost_usd:.4f})\n\n{ex.completion.text}\n"
        )
    if ex.error:
        parts.append(f"\n## error\n\n{ex.error}\n")
    return "".join(parts) + "\n---\n\n"


def recorded_call(
    model: Model,
    messages: list[Message],
    ctx: CallContext,
    transcript_dir: Path,
    before: Callable[[], None] | None = None,
    after: Callable[[Usage], None] | None = None,
) -> Completion:
    """One model call, budget-checked (`before` may raise), counted (`after`) and transcribed,
    whether it answers or fails."""
    if before is not None:
        before()
    common: dict[str, Any] = {
        "task_id": ctx.task_id,
        "node": ctx.node_id,
        "attempt": ctx.attempt,
        "purpose": ctx.purpose,
        "model": model.spec,
        "settings": model.settings(),
        "messages": messages,
        "started_at": datetime.now(UTC),
    }
    t0 = time.monotonic()
    try:
        completion = model.generate(messages, ctx)
    except ModelError as exc:
        append_exchange(transcript_dir, Exchange(**common, error=str(exc), latency_s=time.monotonic() - t0))
        raise
    if after is not None:
        after(completion.usage)
    append_exchange(transcript_dir, Exchange(**common, completion=completion, latency_s=time.monotonic() - t0))
    return completion
