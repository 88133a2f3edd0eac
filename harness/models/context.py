"""What fits in a model's context: its window, a prompt's size, and the cap on one answer.

A window is known from, in order: `--context-window` (the `context_window` setting), what a
server's error said it was (learned once, used for every later call), the server's
`/v1/models` metadata (vLLM's `max_model_len`, llama.cpp's `n_ctx`, OpenRouter's
`context_length`, ...), and the vendor table below. A prompt is counted by the server's
tokenizer when it has one and the prompt is close to the window; otherwise it is estimated at
`CHARS_PER_TOKEN` characters per token (code and English prose with today's BPE tokenizers
come to 3-4.5; the estimate is on the short side, so it overcounts, and it is said to be one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from harness.models.contract import Message, ModelError

CHARS_PER_TOKEN = 3.5
#: Role markers and separators a chat template adds around each message.
MESSAGE_OVERHEAD_TOKENS = 8
#: Below this much room for the answer, a call is not worth making.
MIN_ANSWER_TOKENS = 1024
#: The answer cap when nothing else says: room for the whole script with a quarter to spare
#: (a whole-file answer, or many blocks), plus a plan of this many tokens, and never below the floor.
PLAN_TOKENS = 2048
MIN_DEFAULT_CAP = 4096

#: Context windows of the models researchers run, by name prefix (the longest prefix wins).
#: Vendors publish these on their model pages; a window set here too small refuses prompts
#: that would fit, so where sources differ the larger figure is used.
VENDOR_WINDOWS: dict[str, int] = {
    "gpt-4o": 128_000,
    "gpt-4.1": 1_047_576,
    "gpt-5": 400_000,
    "gpt-5-chat": 128_000,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "codex-mini": 200_000,
    "claude-": 200_000,
    "gemini-2.5": 1_048_576,
    "gemini-3": 1_048_576,
    "deepseek-r1": 131_072,
    "deepseek-reasoner": 131_072,
    "deepseek-chat": 131_072,
}

# What servers say when a prompt does not fit: OpenAI and vLLM, llama-cpp-python, Anthropic.
_WINDOW_IN_ERROR = [
    re.compile(r"maximum context length is (\d[\d,]*)", re.IGNORECASE),
    re.compile(r"context window of (\d[\d,]*)", re.IGNORECASE),
    re.compile(r"tokens > (\d[\d,]*) maximum", re.IGNORECASE),
]
# Fields of a `/v1/models` card that servers use for the window.
_CARD_FIELDS = ("max_model_len", "context_length", "context_window", "max_context_length", "n_ctx", "n_ctx_train")


def estimate_tokens(chars_or_text: int | str) -> int:
    chars = chars_or_text if isinstance(chars_or_text, int) else len(chars_or_text)
    return math.ceil(chars / CHARS_PER_TOKEN)


def estimate_prompt(messages: list[Message]) -> int:
    return sum(estimate_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in messages)


def default_answer_cap(current_code: str) -> int:
    """An answer that can hold the whole current script and a plan, rounded up to 1,024."""
    want = math.ceil(estimate_tokens(current_code) * 1.25) + PLAN_TOKENS
    return max(MIN_DEFAULT_CAP, math.ceil(want / 1024) * 1024)


def vendor_window(model_name: str) -> int | None:
    # A gateway's name (`deepseek/deepseek-r1`) ends with the vendor's.
    name = model_name.rsplit("/", 1)[-1].lower()
    best = max((prefix for prefix in VENDOR_WINDOWS if name.startswith(prefix)), key=len, default=None)
    return VENDOR_WINDOWS[best] if best else None


def window_from_card(card: Mapping[str, object]) -> int | None:
    """The window in a server's model card (llama.cpp nests it under `meta`)."""
    for where in (card, card.get("meta")):
        if isinstance(where, Mapping):
            for field in _CARD_FIELDS:
                value = where.get(field)
                if isinstance(value, int) and value > 0:
                    return value
    return None


def window_from_error(message: str) -> int | None:
    for pattern in _WINDOW_IN_ERROR:
        m = pattern.search(message)
        if m:
            return int(m.group(1).replace(",", ""))
    return None


@dataclass(frozen=True)
class Window:
    tokens: int
    #: Where the figure comes from, for messages: "--context-window", "the server's error", ...
    source: str


@dataclass(frozen=True)
class PromptSize:
    tokens: int
    exact: bool

    def describe(self) -> str:
        if self.exact:
            return f"{self.tokens:,} tokens (counted by the server's tokenizer)"
        return f"about {self.tokens:,} tokens (estimated at {CHARS_PER_TOKEN} characters per token)"


def plan_answer(model: str, prompt: PromptSize, window: Window | None, cap: int) -> int:
    """The answer cap for this call: `cap`, or less so that prompt and answer fit the window.

    Raises a permanent `ModelError` when the prompt leaves too little room, before anything is sent.
    """
    if window is None:
        return cap
    room = window.tokens - prompt.tokens
    if room < MIN_ANSWER_TOKENS:
        raise ModelError(
            f"the prompt cannot fit: it is {prompt.describe()} and {model}'s context window is "
            f"{window.tokens:,} tokens ({window.source}), leaving {max(room, 0):,} for the answer "
            f"(at least {MIN_ANSWER_TOKENS:,} needed); use a model or server with a larger window "
            "(llama.cpp: --n_ctx), or set --context-window if the window is larger than that",
            permanent=True,
        )
    # An estimate may be short: keep a tenth of it spare, as far as the minimum answer allows.
    spare = 0 if prompt.exact else prompt.tokens // 10
    return min(cap, max(room - spare, MIN_ANSWER_TOKENS))
