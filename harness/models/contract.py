"""The model layer's contract: messages in, a completion with its usage out.

Everything a caller of a model needs (the coder, the engine, a scaffold) is here; how an API
model gets its answer is `harness.models.base`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field

from harness.events import EventSink


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


class CallContext(BaseModel):
    """What a call is about. Real LLMs see only the messages; offline models and the progress
    display use this."""

    task_id: str
    file_name: str
    current_code: str
    node_id: int | None = None
    attempt: int = 0
    #: What the call is for: `code` (edits), `analysis` (a run's review), or a scaffold's own purpose.
    purpose: str = "code"

    def describe(self) -> str:
        where = f"node {self.node_id}" if self.node_id is not None else "scaffold"
        return f"task {self.task_id}, {where}, {self.purpose} attempt {self.attempt}"


class Model(ABC):
    """A provider's model. `generate` is called from worker threads and must be thread-safe."""

    #: provider name, the part before `/` in `provider/model`
    provider: ClassVar[str]
    #: Whether every prompt gets the same answer (no sampling): more nodes would re-run one script.
    deterministic: ClassVar[bool] = False
    #: False for offline providers named without a model (`oracle`, not `oracle/<model>`).
    takes_model_name: ClassVar[bool] = True
    #: Whether the code this model answers with may run unisolated: true only for the offline
    #: models, which answer with the human records' change (oracle), no change (null) or the
    #: answers the user recorded before (replay). Code from any other model is hostile input.
    trusted_code: ClassVar[bool] = False

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        self.name = name
        self.args: dict[str, Any] = dict(args or {})
        #: Where retries, waits and a call's progress are reported (`harness.events.Event`s of
        #: kind `model_status` and `model_progress`, with the node the call is for).
        self.on_event: EventSink | None = None

    @property
    def spec(self) -> str:
        """The `provider/model` name this model was created from."""
        return self.name

    @abstractmethod
    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        """Answer the conversation. Raise `ModelError` for a failure of this call."""

    def settings(self) -> dict[str, Any]:
        """Generation settings recorded in `run.json` and in transcripts."""
        return dict(self.args)

    def check_ready(self) -> None:  # noqa: B027 - optional hook
        """Fail early (before any training run) if the model cannot be used, e.g. a missing key."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """End the calls in flight at once (each raises `ModelError`): the search was interrupted."""

    @property
    def priced(self) -> bool:
        """Whether a call's cost is known (offline models cost nothing, which is known)."""
        return True


class ModelError(Exception):
    """A failed model call. `permanent` ones fail the node; others were already retried."""

    def __init__(self, message: str, *, permanent: bool = True) -> None:
        super().__init__(message)
        self.permanent = permanent
