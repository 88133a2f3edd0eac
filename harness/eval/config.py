"""What defines an evaluation (recorded in run.json) and the run directory it is filed under."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness.search.engine import Schedule


class EvalConfig(BaseModel):
    """Everything that defines an evaluation; recorded in run.json."""

    task: str
    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)
    scaffold: str = "flat"
    scaffold_args: dict[str, Any] = Field(default_factory=dict)
    hints: str = "pseudocode"
    seed: int = 0
    executor: str = "local"
    executor_args: dict[str, Any] = Field(default_factory=dict)
    max_parallel: int = 1
    schedule: Schedule = "async"
    results_dir: Path = Path("results")
    data_dir: Path | None = None
    calibration_runs: int = 3
    confirm_runs: int = 4
    #: Where record i's and i+1's times come from: `measured` on this machine (calibrated), or
    #: `paper` (the paper's re-measurement on 8xH100, for tracks that have it; labelled as such).
    #: Either way the best node is confirmed side by side with record i here.
    references: Literal["measured", "paper"] = "measured"
    #: Seeds of the confirmation (SPEEDRUN_SEED = seed, seed+1, ...): with more than one, the
    #: candidate counts only if its mean validation loss is below the target at p < 0.01.
    seeds: int = Field(1, ge=1)
    target_val_loss: float | None = None
    time_limit_s: float | None = None
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    gpus: str | None = None
    #: After each run, one more model call writes a short analysis that child prompts see.
    analyze: bool = False
    #: The script the search starts from instead of record i's (cumulative mode: the agent's
    #: own best solution of the previous task). FSR is still measured against record i.
    start_from: Path | None = None

    def run_id(self) -> str:
        """Named by what identifies a result row, so the same command finds its own run again."""
        parts = [self.task, self.model, self.scaffold, self.hints, f"s{self.seed}"]
        if self.target_val_loss is not None:
            parts.append(f"target{self.target_val_loss:g}")
        if self.analyze:
            parts.append("analyze")
        if self.start_from is not None:
            parts.append("from-" + hashlib.sha256(str(self.start_from).encode()).hexdigest()[:8])
        return run_name(parts)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the recorded one (the node budget may grow)."""
        out = self.model_dump(
            include={"task", "model", "model_args", "scaffold", "scaffold_args", "hints", "seed", "target_val_loss"}
            | {"analyze", "start_from"},
            mode="json",
        )
        out["scaffold_args"] = {k: v for k, v in out["scaffold_args"].items() if k != "nodes"}
        out["model_args"] = {k: v for k, v in out["model_args"].items() if k not in PACING_ARGS}
        return out


#: Model settings that change how calls are made, not what is asked: a resumed run may change them.
PACING_ARGS = frozenset(
    {"max_connections", "base_url", "timeout_s", "stall_s", "requests_per_minute", "tokens_per_minute"}
)


def run_name(parts: list[str]) -> str:
    """A directory name from the settings that identify a run (model names hold `/`)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", "__".join(parts))
