"""The verdict on a run of a track whose records save their model: the harness's measurement of
that model decides, and a printed loss it does not back makes the run invalid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from harness.eval.log import Confirmation
from harness.eval.model_check import HOLDOUT_MARGIN, ModelCheck, check_saved_model
from harness.execution.base import ExecResult
from harness.logparse import parse_log
from harness.outcome import RunResult, judge
from tests.test_model_evaluator import VAL_TOKENS, bigram_loss, bigram_model, table, val_glob, val_tokens

__all__ = ["table", "val_glob"]  # module fixtures, shared with the evaluator's tests

TARGET = 6.0


def _run(tmp_path: Path) -> ExecResult:
    return ExecResult(exit_code=0, log_path=tmp_path / "run.log", executor="local", sandboxed=False, wall_s=5.0)


def _log(loss: float) -> str:
    return f"step:10/10 val_loss:{loss:.4f} train_time:4000ms step_avg:400.00ms\n"


def _judge(tmp_path: Path, workspace: Path, glob: str, printed: float) -> RunResult:
    check = ModelCheck(model_file="model.onnx", val_glob=glob, val_tokens=VAL_TOKENS)
    evaluated = check_saved_model(workspace, check)
    return judge(parse_log(_log(printed)), _run(tmp_path), TARGET, [], model_eval=evaluated, model_required=True)


def test_the_measured_loss_decides_and_the_printed_one_must_agree(
    tmp_path: Path, val_glob: str, table: np.ndarray
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    bigram_model(ws / "model.onnx", table)
    true = bigram_loss(table, val_tokens())
    honest = _judge(tmp_path, ws, val_glob, true)
    assert honest.valid and "harness-evaluated" in honest.protection
    assert honest.model_eval.loss == pytest.approx(true, abs=1e-4)
    lying = _judge(tmp_path, ws, val_glob, true - 0.5)
    assert not lying.valid
    assert any(f"reported val_loss {true - 0.5:.4f}, measured" in v for v in lying.rule_violations)


def test_no_model_or_a_linked_one_is_invalid(tmp_path: Path, val_glob: str, table: np.ndarray) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    missing = _judge(tmp_path, ws, val_glob, 2.0)
    assert not missing.valid and "saved no model" in " ".join(missing.rule_violations)
    real = bigram_model(tmp_path / "elsewhere.onnx", table)
    os.symlink(real, ws / "model.onnx")
    linked = _judge(tmp_path, ws, val_glob, 2.0)
    assert not linked.valid and "link" in " ".join(linked.rule_violations)


def test_held_out_losses_must_back_the_validation_loss() -> None:
    conf = Confirmation(node=3, reference_holdout=[1.80, 1.81], candidate_holdout=[1.79, 1.80])
    assert conf.holdout_problem(HOLDOUT_MARGIN) is None
    overfit = Confirmation(node=3, reference_holdout=[1.80, 1.81], candidate_holdout=[1.80, 1.95])
    problem = overfit.holdout_problem(HOLDOUT_MARGIN)
    assert problem is not None and "pair 2" in problem and "1.9500" in problem
    unscored = Confirmation(node=3, reference_holdout=[1.80], candidate_holdout=[None])
    assert unscored.holdout_problem(HOLDOUT_MARGIN) is not None
