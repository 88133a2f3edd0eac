"""Cost and token budgets: checked before every LLM call, so a run stops cleanly at the limit."""

from __future__ import annotations

import threading

from harness.errors import BudgetExceeded
from harness.models.base import Usage


class Budget:
    def __init__(
        self, max_cost_usd: float | None = None, max_tokens: int | None = None, spent: Usage | None = None
    ) -> None:
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self.spent = spent or Usage()
        self._lock = threading.Lock()

    def check(self) -> None:
        with self._lock:
            if self.max_cost_usd is not None and self.spent.cost_usd >= self.max_cost_usd:
                raise BudgetExceeded(
                    f"cost budget reached (${self.spent.cost_usd:.2f} of ${self.max_cost_usd:.2f}); "
                    "re-run the same command with a higher --max-cost to continue"
                )
            if self.max_tokens is not None and self.spent.total_tokens >= self.max_tokens:
                raise BudgetExceeded(
                    f"token budget reached ({self.spent.total_tokens} of {self.max_tokens}); "
                    "re-run the same command with a higher --max-tokens to continue"
                )

    def add(self, usage: Usage) -> None:
        with self._lock:
            self.spent = self.spent + usage
