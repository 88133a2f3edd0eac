"""What a candidate run achieved: the parsed log, how the process ended, and the verdict.

The script's log says how far it got; the harness decides whether that counts. A run's
printed `train_time` stands only when the harness's own clock agrees with it (`ClockCheck`),
and a static audit's violations make it invalid whatever it printed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from harness.audit import Finding
from harness.eval.evaluator import ModelEval
from harness.eval.model_check import PRINTED_LOSS_TOLERANCE
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
    #: The auditor's findings (violations and flags for review).
    audit: list[Finding] = Field(default_factory=list)
    #: The part of the harness's wall time that the printed train_time leaves out.
    untimed_s: float | None = None
    #: The time the harness scores: the printed train_time, or more when the run's wall time
    #: less record i's untimed share is longer (work moved out of the timed region counts).
    harness_time_ms: float | None = None
    #: How this result was protected: `clock-checked`, `audited`, `harness-evaluated`.
    protection: list[str] = Field(default_factory=list)
    #: The harness's own evaluation of the saved model (tracks whose records save one).
    model_eval: ModelEval | None = None

    @property
    def time_ms(self) -> float | None:
        """The time that counts: the harness's where it measured one, else the printed one."""
        return self.harness_time_ms if self.harness_time_ms is not None else self.train_time_ms

    @property
    def crashed(self) -> bool:
        """The run did not end normally: a case for debugging rather than improving."""
        return self.exit_code != 0 or self.timed_out or self.oom or self.error is not None

    @property
    def valid(self) -> bool:
        """Counts for the score: ended normally, reached the target, broke no rule."""
        return not self.crashed and self.reached_target and not self.rule_violations and self.train_time_ms is not None

    @property
    def status(self) -> RunStatus:
        """`valid`; `buggy` (crashed, timed out, or printed no result: a case for debugging);
        `invalid` (ran, but missed the target or broke a rule)."""
        if self.valid:
            return "valid"
        return "buggy" if self.crashed else "invalid"


RunStatus = Literal["valid", "invalid", "buggy"]


def verdict_reason(result: RunResult, target_val_loss: float) -> str | None:
    """Why a run is not valid, in one line (None for a valid run): its failure, the rules it
    broke, or how far it stayed from the target; every verdict but `valid` carries one."""
    if result.valid:
        return None
    if result.error or result.rule_violations:
        return "; ".join(([result.error] if result.error else []) + result.rule_violations)
    if result.diverged:
        return "the loss diverged (nan or inf)"
    measured = result.model_eval.loss if result.model_eval is not None else None
    if not result.reached_target:
        loss = measured if measured is not None else result.val_loss
        which = "the harness measured" if measured is not None else "final"
        shown = f"{which} val_loss {loss:.4f}" if loss is not None else "no val_loss"
        return f"did not reach the target val_loss {target_val_loss}: {shown}"
    return "the run printed no train_time, so its time to the target is unknown"


NO_VALIDATION_LINE = "the run printed no validation line (`step:S/N val_loss:...`)"


class ClockCheck(BaseModel):
    """What record i (or record i+1, where it leaves more: `for_task`) leaves untimed (harness
    wall time minus its printed train_time) under the same conditions, and how much more a
    candidate may leave untimed.

    A candidate that moves work out of its timed region (an "untimed warm-up" on real data,
    work before the clock starts or after the last validation) shows it here: its wall time
    grows while its printed time does not."""

    reference_untimed_s: float
    #: Whose untimed share `reference_untimed_s` is, for the messages.
    reference_label: str = "record i"
    #: Extra untimed time allowed: the larger of `min_margin_s` and `relative_margin` of record i's.
    relative_margin: float = 0.25
    min_margin_s: float = 2.0

    #: How much a run's untimed share may exceed record i's before the excess counts as training
    #: time: the larger of `min_jitter_s` and `relative_jitter` of record i's (start-up varies).
    relative_jitter: float = 0.25
    min_jitter_s: float = 0.25
    #: Threads per run where the track fixes them (mini: 1). Then a run's CPU time says how much
    #: of its wall time it had a core, and a starved run is allowed its untimed share at that pace.
    threads: int | None = None

    @classmethod
    def for_task(
        cls, record_untimed_s: float | None, next_untimed_s: float | None, threads: int | None
    ) -> ClockCheck | None:
        """The check for a task's candidates: the larger of what records i and i+1 leave untimed.

        Record i+1 is the human answer to the task, so its untimed share is one the task allows:
        records validate at their own cadence (mini's record 03 every 100 steps where 02 did so
        every 200, 14 validations instead of 9, ~22 s more untimed), and validation is outside
        `train_time` by the speedrun's convention. Held to record i alone, record i+1 itself
        (the oracle's node) was invalid there. What this opens: a candidate may hide at most
        that difference, where it is positive, and only on such tasks (docs/integrity.md)."""
        if record_untimed_s is None:
            return None
        if next_untimed_s is not None and next_untimed_s > record_untimed_s:
            return cls(reference_untimed_s=next_untimed_s, reference_label="record i+1", threads=threads)
        return cls(reference_untimed_s=record_untimed_s, threads=threads)

    @property
    def jitter_s(self) -> float:
        return max(self.min_jitter_s, self.relative_jitter * self.reference_untimed_s)

    @property
    def allowed_untimed_s(self) -> float:
        return self.reference_untimed_s + max(self.min_margin_s, self.relative_margin * self.reference_untimed_s)

    def cpu_share(self, wall_s: float, cpu_s: float | None) -> float | None:
        """The share of a one-thread run's wall time it had a core, or None where that is unknown."""
        if self.threads != 1 or cpu_s is None or wall_s <= 0:
            return None
        return min(1.0, cpu_s / wall_s)

    def allowed_for(self, wall_s: float, cpu_s: float | None) -> float:
        """The untimed time allowed to a run that had a core for `cpu_s` of its `wall_s`.

        Start-up, loading and export are CPU work like training, so on a busy machine an honest
        run's untimed share stretches with the rest of it (two candidates on two cores and
        another job beside them: 13.3 s against record i's 9.0 s, seen). The allowance stretches
        by the same factor, at most `1 / MIN_CPU_SHARE`. Hidden work gains nothing from this:
        whatever exceeds the jitter is counted as training time all the same (`judge`)."""
        share = self.cpu_share(wall_s, cpu_s)
        return self.allowed_untimed_s / max(share if share is not None else 1.0, MIN_CPU_SHARE)


#: The smallest CPU share the clock allowance stretches for; a run starved beyond it is judged
#: as if it had this share.
MIN_CPU_SHARE = 0.25


#: A printed train_time may exceed the harness's wall time by this much (clock granularity).
CLOCK_SLACK_S = 0.5


def clock_problem(
    train_time_ms: float | None, wall_s: float, check: ClockCheck | None, cpu_s: float | None = None
) -> str | None:
    """Why the printed train_time cannot be believed, or None."""
    if train_time_ms is None or wall_s <= 0:
        return None
    reported = train_time_ms / 1000
    if reported > wall_s + CLOCK_SLACK_S:
        return f"harness clock: reported train_time {reported:.1f} s exceeds the run's wall time {wall_s:.1f} s"
    untimed = wall_s - reported
    if check is not None and untimed > (allowed := check.allowed_for(wall_s, cpu_s)):
        share = check.cpu_share(wall_s, cpu_s)
        pace = f", the run having had the CPU {share:.0%} of its time" if share is not None and share < 1 else ""
        return (
            f"harness clock: {untimed:.1f} s of the run is outside its train_time, where "
            f"{check.reference_label} leaves {check.reference_untimed_s:.1f} s (at most {allowed:.1f} s allowed{pace})"
        )
    return None


def model_problem(printed: float | None, model_eval: ModelEval | None, tolerance: float) -> str | None:
    """Why the harness's evaluation of the saved model does not back the printed loss, or None."""
    if model_eval is None or model_eval.error is not None or model_eval.loss is None:
        why = model_eval.error if model_eval is not None and model_eval.error else "no model was evaluated"
        return f"harness evaluation: {why}"
    if model_eval.causal is False:
        return "harness evaluation: the model's logits depend on later tokens (it is not causal)"
    if printed is not None and abs(printed - model_eval.loss) > tolerance:
        return f"harness evaluation: reported val_loss {printed:.4f}, measured {model_eval.loss:.4f}"
    return None


def judge(
    parsed: ParsedLog,
    run: ExecResult,
    target_val_loss: float,
    findings: list[Finding] | None = None,
    clock: ClockCheck | None = None,
    model_eval: ModelEval | None = None,
    model_required: bool = False,
    loss_tolerance: float = PRINTED_LOSS_TOLERANCE,
) -> RunResult:
    """The one verdict on a run, for search nodes, calibration and confirmation runs alike.

    `findings` are the auditor's (its violations make the run invalid); `clock` is record i's
    untimed share to hold the run to (None for record i's own reference runs)."""
    protection = ["audited"] if findings is not None else []
    findings = findings or []
    violations = [str(f) for f in findings if f.severity == "violation"]
    reached = (
        parsed.val_loss is not None
        and not parsed.diverged
        and parsed.val_loss == parsed.val_loss  # not nan
        and parsed.val_loss <= target_val_loss
    )
    # An exit status of 0 with nothing parsed is still a failure to debug, so it says what failed.
    error = run.describe_failure() or (NO_VALIDATION_LINE if parsed.val_loss is None else None)
    if model_required and reached and run.ok:
        # The printed loss is only progress: the harness's measurement of the model decides.
        problem_text = model_problem(parsed.val_loss, model_eval, loss_tolerance)
        if problem_text is not None:
            violations.append(problem_text)
        elif model_eval is not None and model_eval.loss is not None:
            reached = model_eval.loss <= target_val_loss
            protection.append("harness-evaluated")
    untimed = run.wall_s - parsed.train_time_ms / 1000 if parsed.train_time_ms is not None else None
    problem = clock_problem(parsed.train_time_ms, run.wall_s, clock, run.cpu_s)
    if problem is not None:
        violations.append(problem)
    harness_ms = None
    if run.wall_s > 0 and parsed.train_time_ms is not None:
        protection.append("clock-checked" if clock is not None else "clock-bounded")
        if clock is not None:
            counted = run.wall_s - clock.reference_untimed_s - clock.jitter_s
            harness_ms = max(parsed.train_time_ms, 1000 * counted)
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
        error=error,
        rule_violations=violations,
        audit=findings,
        untimed_s=untimed,
        harness_time_ms=harness_ms,
        protection=protection,
        model_eval=model_eval,
    )
