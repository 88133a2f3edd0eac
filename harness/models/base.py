"""The model layer's contract: messages in, a completion with its usage out.

Providers import their SDK lazily. API keys live here and never reach an executor.
"""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class Usage(BaseModel):
    """Tokens, money and time spent on LLM calls; adds up across calls, nodes and runs."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    #: Calls whose model is missing from the price table: their cost counts as 0, so a total
    #: with unpriced calls is a lower bound (and `--max-cost` cannot see them).
    unpriced_calls: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{name: getattr(self, name) + getattr(other, name) for name in Usage.model_fields})

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Completion(BaseModel):
    text: str
    usage: Usage = Field(default_factory=Usage)
    model: str = ""
    finish_reason: str | None = None


class CodingContext(BaseModel):
    """What the coder is working on. Real LLMs see only the messages; offline models use this."""

    task_id: str
    file_name: str
    current_code: str
    node_id: int | None = None
    attempt: int = 0
    #: What the call is for: `code` (edits), `analysis` (a run's review), or a scaffold's own purpose.
    purpose: str = "code"


class Model(ABC):
    """A provider's model. `generate` is called from worker threads and must be thread-safe."""

    #: provider name, the part before `/` in `provider/model`
    provider: ClassVar[str]
    #: Whether the code this model answers with may run unisolated: true only for the offline
    #: models, which answer with the human records' change (oracle), no change (null) or the
    #: answers the user recorded before (replay). Code from any other model is hostile input.
    trusted_code: ClassVar[bool] = False

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        self.name = name
        self.args: dict[str, Any] = dict(args or {})
        #: Status messages for the progress display (e.g. "rate limited, retrying in 12 s").
        self.on_status: Callable[[str], None] | None = None

    @property
    def spec(self) -> str:
        """The `provider/model` name this model was created from."""
        return self.name

    @abstractmethod
    def generate(self, messages: list[Message], context: CodingContext) -> Completion:
        """Answer the conversation. Raise `ModelError` for a failure of this call."""

    def settings(self) -> dict[str, Any]:
        """Generation settings recorded in `run.json` and in transcripts."""
        return dict(self.args)

    def check_ready(self) -> None:  # noqa: B027 - optional hook
        """Fail early (before any training run) if the model cannot be used, e.g. a missing key."""


class ModelError(Exception):
    """A failed model call. `permanent` ones fail the node; others were already retried."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent


_dotenv_lock = threading.Lock()
_dotenv_loaded = False


def env(name: str) -> str | None:
    """An environment variable, after loading `.env` from the working directory (once).

    Variables already set win over the file. Executors build a candidate's environment from
    an allow-list, so keys loaded here do not reach a training run.
    """
    global _dotenv_loaded
    with _dotenv_lock:
        if not _dotenv_loaded:
            from dotenv import load_dotenv

            load_dotenv(Path.cwd() / ".env", override=False)
            _dotenv_loaded = True
    return os.environ.get(name) or None
