"""What a candidate run achieved: the parsed log, how the process ended, and the verdict."""

from __future__ import annotations

from pydantic import BaseModel, Field

from harness.execution.base import ExecResult
from harness.logparse import ParsedLog


class RunResult(BaseModel):
    """The metrics of one run, all from the deterministic parser, never from an LLM."""

    val_loss: float | None = None
    train_time_ms: float | None = None
    step: int | None = None
    total_steps: int | None = None
    log_finished: bool = False
    reached_target: bool = False
    exit_code: int | None = None
    timed_out: bool = False
    oom: bool = False
    diverged: bool = False
    wall_time_s: float = 0.0
    #: CPU seconds of the run and its descendants, by the executor's own measure (None: unknown).
    cpu_s: float | None = None
    executor: str = ""
    sandboxed: bool = False
    error: str | None = None
    rule_violations: list[str] = Field(default_factory=list)

    @property
    def crashed(self) -> bool:
        """The run did not end normally: a case for debugging rather than improving."""
        return self.exit_code != 0 or self.timed_out or self.oom or self.error is not None

    @property
    def valid(self) -> bool:
        """Counts for the score: ended normally, reached the target, broke no rule."""
        return not self.crashed and self.reached_target and not self.rule_violations and self.train_time_ms is not None


def judge(parsed: ParsedLog, run: ExecResult, target_val_loss: float, violations: list[str]) -> RunResult:
    reached = (
        parsed.val_loss is not None
        and not parsed.diverged
        and parsed.val_loss == parsed.val_loss  # not nan
        and parsed.val_loss <= target_val_loss
    )
    error = run.describe_failure() or None
    if error is None and parsed.val_loss is None:
        error = "the log has no validation line (`step:S/N val_loss:...`)"
    return RunResult(
        val_loss=parsed.val_loss,
        train_time_ms=parsed.train_time_ms,
        step=parsed.step,
        total_steps=parsed.total_steps,
        log_finished=parsed.finished,
        reached_target=reached,
        exit_code=run.exit_code,
        timed_out=run.timed_out,
        oom=run.oom,
        diverged=parsed.diverged,
        wall_time_s=run.wall_s,
        cpu_s=run.cpu_s,
        executor=run.executor,
        sandboxed=run.sandboxed,
        error=error if run.exit_code != 0 or run.timed_out or run.oom or run.error else None,
        rule_violations=violations,
    )
