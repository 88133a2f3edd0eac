"""Every verdict but `valid` carries a one-line reason a user (and a debugging model) can act on."""

from __future__ import annotations

from harness.outcome import RunResult, verdict_reason


def test_a_run_that_missed_the_target_says_by_how_much() -> None:
    missed = RunResult(val_loss=2.8269, train_time_ms=90571.0, exit_code=0, log_finished=True, reached_target=False)
    assert missed.status == "invalid"
    assert verdict_reason(missed, 1.77) == "did not reach the target val_loss 1.77: final val_loss 2.8269"


def test_a_crash_or_a_broken_rule_gives_its_own_reason_and_a_valid_run_none() -> None:
    crashed = RunResult(exit_code=1, error="exit status 1")
    broke = RunResult(val_loss=1.7, train_time_ms=10.0, exit_code=0, reached_target=True, rule_violations=["R2: x"])
    valid = RunResult(val_loss=1.7, train_time_ms=10.0, exit_code=0, log_finished=True, reached_target=True)
    assert verdict_reason(crashed, 1.77) == "exit status 1"
    assert verdict_reason(broke, 1.77) == "R2: x"
    assert valid.status == "valid" and verdict_reason(valid, 1.77) is None
    untimed = RunResult(val_loss=1.7, exit_code=0, log_finished=True, reached_target=True)
    assert untimed.status == "invalid" and "no train_time" in (verdict_reason(untimed, 1.77) or "")


def test_the_clock_allows_the_larger_untimed_share_of_the_two_records() -> None:
    from harness.outcome import ClockCheck, clock_problem

    assert ClockCheck.for_task(None, 40.0, 1) is None
    lower = ClockCheck.for_task(30.0, 25.0, 1)
    assert lower is not None and (lower.reference_untimed_s, lower.reference_label) == (30.0, "record i")
    higher = ClockCheck.for_task(30.5, 52.0, 1)
    assert higher is not None and (higher.reference_untimed_s, higher.reference_label) == (52.0, "record i+1")
    # mini-2's oracle node: 55.9 s untimed; record 02 leaves 30.5 s, record 03 (its own code) 52 s.
    assert clock_problem(180_832, 236.7, ClockCheck.for_task(30.5, None, 1), 233.8) is not None
    assert clock_problem(180_832, 236.7, higher, 233.8) is None
    hiding = clock_problem(100_000, 236.7, higher, 233.8)
    assert hiding is not None and "where record i+1 leaves 52.0 s" in hiding
