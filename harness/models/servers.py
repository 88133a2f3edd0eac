"""What OpenAI-compatible servers (vLLM, llama.cpp, gateways) tell about themselves, through the
SDK's client: the context window in their model list, and token counts from their tokenizer."""

from __future__ import annotations

import threading
from typing import Any

from harness.models.context import MESSAGE_OVERHEAD_TOKENS, window_from_card
from harness.models.contract import Message


def served_window(client: Any, model_name: str) -> int | None:
    """The window in the server's `/v1/models` card for the model (or its only card)."""
    cards = [card.model_dump() for card in client.models.list().data]
    mine = [c for c in cards if c.get("id") == model_name] or (cards if len(cards) == 1 else [])
    return window_from_card(mine[0]) if mine else None


class ServerTokenizer:
    """Counts a prompt with the server's tokenizer, remembering which endpoint it has (or none).

    vLLM's `/tokenize` counts the chat as templated; llama-cpp-python's `/extras/tokenize/count`
    counts text, to which the template's per-message overhead is added.
    """

    ENDPOINTS = ("/tokenize", "/extras/tokenize/count")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoint: str | None = None
        self._none = False

    def count(self, client: Any, model_name: str, messages: list[Message]) -> int | None:
        with self._lock:
            if self._none:
                return None
            endpoints = [self._endpoint] if self._endpoint else list(self.ENDPOINTS)
        # The endpoints live at the server's root, beside /v1.
        root = str(client.base_url).rstrip("/").removesuffix("/v1")
        for path in endpoints:
            if path == "/tokenize":
                body: dict[str, Any] = {"model": model_name, "messages": [m.model_dump() for m in messages]}
                overhead = 0
            else:
                body = {"model": model_name, "input": "\n".join(m.content for m in messages)}
                overhead = MESSAGE_OVERHEAD_TOKENS * len(messages)
            try:
                answer = client.post(root + path, cast_to=object, body=body)
            except Exception:
                continue
            if isinstance(answer, dict) and isinstance(answer.get("count"), int):
                with self._lock:
                    self._endpoint = path
                return int(answer["count"]) + overhead
        with self._lock:
            self._none = self._endpoint is None
        return None
