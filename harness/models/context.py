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
import threading
from collections.abc import Callable, Mapping
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


class WindowBook:
    """What one model's window is known to be, and the cap each call gets from it (thread-safe)."""

    def __init__(self, model: str, model_name: str, setting: int | None) -> None:
        self.model, self.model_name, self.setting = model, model_name, setting
        self._lock = threading.Lock()
        self._window: Window | None = None
        self._known = False

    def window(self, served: Callable[[], int | None]) -> Window | None:
        """The window, resolved once; `served` asks the server (only if the setting does not say)."""
        with self._lock:
            if self._known:
                return self._window
        window = None
        if self.setting:
            window = Window(self.setting, "--context-window")
        elif (tokens := _quietly(served)) is not None:
            window = Window(tokens, "reported by the server's /v1/models")
        elif (listed := vendor_window(self.model_name)) is not None:
            window = Window(listed, "the vendor's figure in harness/models/context.py")
        with self._lock:
            if not self._known:
                self._window, self._known = window, True
            return self._window

    def learn(self, tokens: int) -> bool:
        """Take the window a server's error named; False if it is what was known already."""
        with self._lock:
            if self._window is not None and self._window.tokens == tokens:
                return False
            self._window, self._known = Window(tokens, "named by the server's error"), True
            return True

    def plan(
        self, messages: list[Message], cap: int, served: Callable[[], int | None], count: Callable[[], int | None]
    ) -> int:
        """This call's answer cap (`plan_answer`); near the window, `count` asks the server's tokenizer."""
        window = self.window(served)
        prompt = PromptSize(estimate_prompt(messages), exact=False)
        if window is not None and prompt.tokens + cap > 0.8 * window.tokens:
            counted = _quietly(count)
            if counted is not None:
                prompt = PromptSize(counted, exact=True)
        return plan_answer(self.model, prompt, window, cap)


def _quietly(ask: Callable[[], int | None]) -> int | None:
    """What a server says about itself, or None when it cannot say (any error): it is only a help."""
    try:
        return ask()
    except Exception:
        return None
