"""The scorer's ladder (`eval.score.score_task`) on journals and confirmations whose figures are
known: each case a best node can be in gives its own FSR and says why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.eval.log import Confirmation, Reference, TaskScore
from harness.eval.score import FAR_SLOWER_RATIO, score_task
from harness.outcome import RunResult
from harness.search.journal import Journal, Node

# Record i 1000 ms, record i+1 500 ms in calibration: t_i+1/t_i 0.5.
REF = Reference(source="calibrated", from_record="a", to_record="b", t_ref_ms=1000.0, t_next_ms=500.0, next_ratio=0.5)
MARGIN = 0.03


def _journal(tmp_path: Path, times: list[float | None]) -> Journal:
    journal = Journal(tmp_path / "run")
    for nid, t in enumerate(times):
        result = RunResult(val_loss=0.9 if t else 2.0, train_time_ms=t, reached_target=t is not None, exit_code=0)
        status = "valid" if t is not None else "invalid"
        journal.finish(Node(id=nid, parent=None, action="draft", status=status, result=result))
    return journal


def _rounds(node: int, candidate: list[float], record_i: list[float], record_next: list[float]) -> Confirmation:
    n = len(candidate)
    return Confirmation(
        node=node,
        candidate_ms=candidate,
        reference_ms=record_i,
        next_ms=record_next,
        next_record="b" if record_next else None,
        candidate_valid=[True] * n,
        seeds=[0] * n,
        candidate_val_loss=[0.9] * n,
    )


def _score(
    journal: Journal,
    *,
    confirm: Callable[[int], Confirmation] | None = None,
    confirm_runs: int = 2,
    unchanged: Callable[[int], bool] = lambda _: False,
    ref: Reference = REF,
) -> TaskScore:
    def never(node: int) -> Confirmation:
        raise AssertionError(f"node {node} should not have been confirmed")

    return score_task(
        "toy-0",
        journal,
        ref,
        min_speedup=MARGIN,
        confirm_runs=confirm_runs,
        target=1.0,
        unchanged=unchanged,
        confirm=confirm or never,
    )


def test_no_valid_node_scores_zero(tmp_path: Path) -> None:
    score = _score(_journal(tmp_path, [None, None]))
    assert (score.fsr, score.note, score.valid_nodes) == (0.0, "no valid node", 0)


def test_record_i_unchanged_scores_zero_without_being_re_measured(tmp_path: Path) -> None:
    score = _score(_journal(tmp_path, [700.0]), unchanged=lambda n: n == 0)
    assert score.fsr == 0.0 and score.note == "the best node is record a unchanged"
    assert score.candidate_ratio == pytest.approx(0.7) and score.confirmation is None


def test_without_confirmation_the_node_s_own_run_counts(tmp_path: Path) -> None:
    score = _score(_journal(tmp_path, [900.0, 750.0]), confirm_runs=0)
    assert score.best_node == 1 and score.fsr == pytest.approx(0.5) and score.note == "from the node's own run"


def test_a_best_node_far_slower_than_record_i_is_not_confirmed(tmp_path: Path) -> None:
    score = _score(_journal(tmp_path, [1000.0 * FAR_SLOWER_RATIO + 1]))
    assert score.fsr == 0.0 and score.note == "slower than record i" and score.confirmation is None


def test_a_reference_where_record_i_plus_1_is_not_faster_is_undefined(tmp_path: Path) -> None:
    ref = REF.model_copy(update={"t_next_ms": 1010.0, "next_ratio": 1.01})
    score = _score(_journal(tmp_path, [600.0]), ref=ref)
    assert score.fsr == 0.0 and score.note.startswith("undefined: record b is not faster than a")


def test_confirmed_fsr_divides_by_record_i_plus_1_s_ratio_in_the_same_rounds(tmp_path: Path) -> None:
    # The machine ran slower during confirmation: record i 2000 ms, record i+1 1200 ms (0.6, not
    # the calibration's 0.5), the node 1400 ms (0.7): FSR (1 - 0.7) / (1 - 0.6) = 0.75.
    conf = _rounds(0, [1400.0, 1400.0], [2000.0, 2000.0], [1200.0, 1200.0])
    score = _score(_journal(tmp_path, [700.0]), confirm=lambda n: conf)
    assert score.fsr == pytest.approx(0.75)
    assert score.candidate_ratio == pytest.approx(0.7) and "confirmed" in score.protection


def test_record_i_plus_1_not_faster_in_the_confirmation_rounds_is_undefined_not_a_score(tmp_path: Path) -> None:
    # Calibration said record i+1 halves the time, but in the rounds beside the node it ran as
    # slow as record i: FSR's denominator is gone, so the task scores 0 and says why instead of
    # dividing by a speed-up this machine did not show.
    conf = _rounds(0, [1400.0, 1500.0], [2000.0, 2000.0], [2000.0, 2040.0])
    score = _score(_journal(tmp_path, [700.0]), confirm=lambda n: conf)
    assert score.fsr == 0.0 and score.confirmation == conf
    assert score.note.startswith("undefined: record b was not faster than a in the confirmation rounds")
    assert "t_i+1/t_i 1.010" in score.note
    assert score.candidate_ratio == pytest.approx(0.725) and score.estimate is None


def test_rounds_without_record_i_plus_1_fall_back_to_the_reference_ratio(tmp_path: Path) -> None:
    # An older confirmation measured only record i and the node: t_i+1/t_i is the calibration's.
    conf = _rounds(0, [1500.0, 1500.0], [2000.0, 2000.0], [])
    score = _score(_journal(tmp_path, [700.0]), confirm=lambda n: conf)
    assert score.fsr == pytest.approx((1 - 0.75) / (1 - 0.5))


def test_a_confirmed_node_that_missed_the_target_once_scores_zero(tmp_path: Path) -> None:
    conf = _rounds(0, [1400.0, 1400.0], [2000.0, 2000.0], [1200.0, 1200.0])
    conf = conf.model_copy(update={"candidate_valid": [True, False]})
    score = _score(_journal(tmp_path, [700.0]), confirm=lambda n: conf)
    assert score.fsr == 0.0 and score.note == "the best node did not reach the target in every confirmation run"


def test_within_the_noise_margin_of_record_i_scores_zero(tmp_path: Path) -> None:
    conf = _rounds(0, [1980.0, 1980.0], [2000.0, 2000.0], [1200.0, 1200.0])
    score = _score(_journal(tmp_path, [700.0]), confirm=lambda n: conf)
    assert score.fsr == 0.0 and score.note.startswith("not faster than record i beyond the track's noise margin")
