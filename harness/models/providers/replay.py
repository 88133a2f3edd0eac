"""`replay`: re-serve the answers a finished run recorded, so it can be reproduced without a key.

The answer for a call is the one recorded for the same node and attempt in
`<replay_from>/nodes/<node>/transcript.jsonl` (the last one, if a resumed run redid the node).
A replayed call reports its tokens and cost as zero: this run spent nothing, and the original
run's usage stays in its own results.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from harness.coder.transcript import TRANSCRIPT_JSONL, read_exchanges
from harness.errors import ConfigError
from harness.models.contract import CallContext, Completion, Message, Model, ModelError, Usage
from harness.models.registry import provider

log = logging.getLogger(__name__)


@provider
class ReplayModel(Model):
    provider = "replay"
    takes_model_name = False
    trusted_code = True

    def __init__(self, name: str, args: dict[str, Any] | None = None) -> None:
        super().__init__(name, args)
        source = self.args.get("replay_from")
        self.run_dir = Path(source).expanduser() if source else None

    def check_ready(self) -> None:
        if self.run_dir is None:
            raise ConfigError("--model replay needs --replay-from RUN_DIR (a results/<run_id> directory)")
        if not (self.run_dir / "nodes").is_dir():
            raise ConfigError(f"--replay-from {self.run_dir}: not a run directory (it has no nodes/)")

    def settings(self) -> dict[str, Any]:
        return {"replay_from": str(self.run_dir) if self.run_dir else None}

    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        if self.run_dir is None:
            raise ModelError("replay has no --replay-from run directory", permanent=True)
        # A node's calls (code, analysis) live with the node; a scaffold's own calls in scaffold/.
        where = "scaffold" if context.node_id is None else f"nodes/{context.node_id}"
        path = self.run_dir / where / TRANSCRIPT_JSONL
        recorded = [
            ex
            for ex in read_exchanges(path.parent)
            if ex.purpose == context.purpose and ex.attempt == context.attempt and ex.completion is not None
        ]
        if not recorded:
            raise ModelError(f"no recorded {context.purpose} answer for {where} attempt {context.attempt} in {path}")
        exchange = recorded[-1]
        assert exchange.completion is not None
        if exchange.task_id != context.task_id:
            raise ModelError(f"{path} was recorded for task {exchange.task_id}, not {context.task_id}", permanent=True)
        if exchange.messages != messages:
            # The prompt changed since the recording (other hints, a newer harness): the edits
            # are still served, but the replay may not reproduce what the model would say now.
            log.warning(
                "replay: node %s attempt %s was asked differently when recorded", context.node_id, context.attempt
            )
        return exchange.completion.model_copy(update={"usage": Usage(calls=1)})
