"""The harness's own validity check on the real mini track: oracle recovers the human record's
speed-up (FSR near 1), null recovers none (FSR 0). Real training runs, so these are `slow`;
the smoke variant runs the same path at a loose target in the default suite.

By hand: `pytest -m slow tests/test_mini_eval.py -k first_task` (about 45 minutes on a 2-core
machine: one calibration round of records 00 and 01, the oracle's node and two confirmation
rounds of records 00, 01 and the node, the null's node; the null's unchanged script is not
re-measured). The oracle on every
task is `-k every_task` (hours: each task calibrates and confirms its own pair of records;
`-k "every_task and mini-8"` picks one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.eval.config import EvalConfig
from harness.eval.evaluate import evaluate
from harness.manifests.tracks import load_track


def _first_task() -> str:
    return load_track("mini").tasks()[0].id


def _cfg(tmp_path: Path, data: Path, model: str, **kw: object) -> EvalConfig:
    base: dict[str, object] = dict(
        task=_first_task(),
        model=model,
        hints="pseudocode",
        scaffold="flat",
        scaffold_args={"nodes": 1},
        results_dir=tmp_path / "results",
        data_dir=data,
    )
    base.update(kw)
    return EvalConfig.model_validate(base)


def test_smoke_eval_real_training(tmp_path: Path, mini_data_dir: Path) -> None:
    """The whole path with real torch training, stopped early at a loose target."""
    info = evaluate(
        _cfg(
            tmp_path,
            mini_data_dir,
            "oracle",
            task=load_track("mini").tasks()[-1].id,
            target_val_loss=2.6,
            calibration_runs=1,
            confirm_runs=1,
        )
    )
    assert info.status == "finished" and info.score is not None
    assert info.score.valid_nodes == 1
    log = (tmp_path / "results" / info.run_id / "nodes" / "0" / "run.log").read_text()
    assert " val_loss:" in log and "train_time:" in log


@pytest.fixture(scope="module")
def calibration_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The slow checks share one calibration, as evaluations on one machine do."""
    return tmp_path_factory.mktemp("shared-cache")


# Far past the suite's 15-minute per-test timeout, which is for the default (CI) tests.
SLOW_TIMEOUT_S = 3 * 3600


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT_S)
def test_oracle_first_task_fsr_near_one(
    tmp_path: Path, mini_data_dir: Path, calibration_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEEDRUN_CACHE", str(calibration_cache))
    # Two confirmation rounds of records 00, 01 and the node give both ratios of the score.
    info = evaluate(_cfg(tmp_path, mini_data_dir, "oracle", calibration_runs=1, confirm_runs=2))
    assert info.score is not None
    print(info.score.model_dump_json(indent=2))
    assert 0.7 <= info.score.fsr <= 1.3


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT_S)
def test_null_first_task_fsr_zero(
    tmp_path: Path, mini_data_dir: Path, calibration_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEEDRUN_CACHE", str(calibration_cache))
    info = evaluate(_cfg(tmp_path, mini_data_dir, "null", calibration_runs=1, confirm_runs=2))
    assert info.score is not None
    print(info.score.model_dump_json(indent=2))
    assert info.score.fsr == 0.0


def _task_ids() -> list[str]:
    return [t.id for t in load_track("mini").tasks()]


@pytest.mark.slow
@pytest.mark.timeout(SLOW_TIMEOUT_S)
@pytest.mark.parametrize("task", _task_ids())
def test_oracle_fsr_near_one_on_every_task(
    task: str, tmp_path: Path, mini_data_dir: Path, calibration_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every record of the chain passes the harness's checks as the oracle's node, and its
    speed-up is recovered: the default confirmation (rounds of record i, record i+1 and the
    node until the interval is narrow, at most four)."""
    monkeypatch.setenv("SPEEDRUN_CACHE", str(calibration_cache))
    info = evaluate(_cfg(tmp_path, mini_data_dir, "oracle", task=task, calibration_runs=1))
    assert info.score is not None
    print(f"ORACLE {task} " + info.score.model_dump_json())
    assert info.score.valid_nodes == 1, info.score.note
    assert 0.7 <= info.score.fsr <= 1.3, info.score.note
