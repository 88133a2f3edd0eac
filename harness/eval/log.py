"""The on-disk record of an evaluation: run.json (config, machine, status, score) and the
score's parts (reference times, the confirmation runs). Readable without the code that wrote it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from harness.coder.answer_log import AnswerFormats
from harness.eval.config import EvalConfig
from harness.fsutil import write_text_atomic
from harness.machine import MachineInfo
from harness.models import Usage
from harness.scoring import FsrEstimate, RecordVerdict, paired_ratios

RUN_JSON = "run.json"


class Reference(BaseModel):
    """Record i's and record i+1's times, and where they come from."""

    source: Literal["calibrated", "paper"]
    #: Where the reference times were measured (this machine's description, or the paper's).
    hardware: str = ""
    from_record: str
    to_record: str
    t_ref_ms: float
    t_next_ms: float
    next_ratio: float
    runs: int = 0
    t_ref_spread_ms: tuple[float, float] | None = None
    t_next_spread_ms: tuple[float, float] | None = None
    #: Record i's and record i+1's median untimed share of a run on this machine (calibrated
    #: references only): the harness clock's allowance is the larger (`ClockCheck.for_task`).
    t_ref_untimed_s: float | None = None
    t_next_untimed_s: float | None = None
    #: t_{i+1}/t_i in each calibration round (calibrated references), for FSR's interval.
    next_ratios: list[float] = Field(default_factory=list)


class Confirmation(BaseModel):
    """The best node re-run side by side with record i (and, for calibrated references, record
    i+1: one round runs all three, so t_{i+1}/t_i is paired as tightly as the candidate's ratio)."""

    node: int
    candidate_ms: list[float] = Field(default_factory=list)
    reference_ms: list[float] = Field(default_factory=list)
    #: Record i+1's time and untimed share in each round, where it ran in the rounds (empty otherwise).
    next_ms: list[float] = Field(default_factory=list)
    next_untimed_s: list[float | None] = Field(default_factory=list)
    next_record: str | None = None
    candidate_valid: list[bool] = Field(default_factory=list)
    #: Why a candidate run did not count (its error or the rule it broke), per pair.
    candidate_errors: list[str] = Field(default_factory=list)
    #: Per pair, the loss of each run's saved model on the held-out data no run can read
    #: (tracks whose records save a model); None where it could not be scored.
    reference_holdout: list[float | None] = Field(default_factory=list)
    candidate_holdout: list[float | None] = Field(default_factory=list)
    #: Per pair: the seed both runs had (SPEEDRUN_SEED), and the candidate's final validation loss
    #: (the harness's measurement where the track has one), for the record rule.
    seeds: list[int] = Field(default_factory=list)
    candidate_val_loss: list[float | None] = Field(default_factory=list)

    def holdout_problem(self, margin: float) -> str | None:
        """Why the candidate's held-out losses do not back its validation loss, or None."""
        for k, (ref, cand) in enumerate(zip(self.reference_holdout, self.candidate_holdout, strict=False)):
            if ref is None:
                continue
            if cand is None or cand > ref + margin:
                got = "no score" if cand is None else f"{cand:.4f}"
                return (
                    f"held-out check: pair {k + 1}'s model scores {got} on the held-out plays where record i's "
                    f"scores {ref:.4f} (more than {margin} worse): its validation loss does not carry to unseen data"
                )
        return None

    @property
    def ratios(self) -> list[float]:
        return paired_ratios(self.candidate_ms, self.reference_ms)

    @property
    def next_ratios(self) -> list[float]:
        """t_{i+1}/t_i per round; empty unless record i+1 ran in every round."""
        if not self.next_ms or len(self.next_ms) != len(self.reference_ms):
            return []
        return paired_ratios(self.next_ms, self.reference_ms)


class TaskScore(BaseModel):
    task: str
    fsr: float
    best_node: int | None
    best_time_ms: float | None
    candidate_ratio: float | None
    reference: Reference
    confirmation: Confirmation | None = None
    #: The FSR with its interval from the confirmation pairs (`scoring.estimate_fsr`).
    estimate: FsrEstimate | None = None
    #: The speedrun's record rule over the confirmation's seeds (`--seeds`).
    record_rule: RecordVerdict | None = None
    nodes: int
    valid_nodes: int
    note: str = ""
    #: How the score was protected: the best node's checks (`audited`, `clock-checked`,
    #: `harness-evaluated`) and `confirmed` when it was re-run beside record i.
    protection: list[str] = Field(default_factory=list)


class RunInfo(BaseModel):
    schema_version: int = 1
    run_id: str
    config: EvalConfig
    track: str
    status: Literal["running", "finished", "stopped", "failed"] = "running"
    status_detail: str = ""
    sandboxed: bool = False
    versions: dict[str, str] = Field(default_factory=dict)
    machine: MachineInfo
    model_settings: dict[str, Any] = Field(default_factory=dict)
    scaffold_params: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    usage: Usage = Field(default_factory=Usage)
    #: How the model's answers were written (whole file, SEARCH/REPLACE, diff, ...), applied or refused.
    answer_formats: AnswerFormats | None = None
    score: TaskScore | None = None


def read_run(run_dir: Path) -> RunInfo | None:
    path = run_dir / RUN_JSON
    return RunInfo.model_validate_json(path.read_text()) if path.is_file() else None


def write_run(run_dir: Path, info: RunInfo) -> None:
    info.updated_at = datetime.now(UTC)
    write_text_atomic(run_dir / RUN_JSON, info.model_dump_json(indent=2))
