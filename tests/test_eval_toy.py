"""Whole evaluations on the toy track: oracle recovers the speed-up, null recovers none."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.eval.config import EvalConfig
from harness.eval.evaluate import evaluate
from harness.eval.log import read_run
from harness.execution import bwrap
from harness.leaderboard import collect

runner = CliRunner()


def _cfg(tmp_path: Path, model: str, **kw: object) -> EvalConfig:
    base: dict[str, object] = dict(
        task="toy-0",
        model=model,
        scaffold="flat",
        scaffold_args={"nodes": 2},
        results_dir=tmp_path / "results",
        calibration_runs=2,
        confirm_runs=2,
    )
    base.update(kw)
    return EvalConfig.model_validate(base)


def test_oracle_recovers_the_speedup(toy_home: Path, tmp_path: Path) -> None:
    info = evaluate(_cfg(tmp_path, "oracle"))
    assert info.status == "finished" and info.score is not None
    assert 0.7 <= info.score.fsr <= 1.3
    assert info.score.valid_nodes == 2 and info.score.reference.source == "calibrated"
    run_dir = tmp_path / "results" / info.run_id
    node = run_dir / "nodes" / "0"
    for name in ("diff.patch", "run.log", "result.json", "transcript.jsonl", "transcript.md", "workspace/train.py"):
        assert (node / name).is_file(), name
    assert "RATE = 0.04" in (node / "workspace" / "train.py").read_text()
    assert "+RATE = 0.04" in (node / "diff.patch").read_text()
    assert (run_dir / "journal.jsonl").is_file()
    recorded = read_run(run_dir)
    assert recorded is not None and recorded.status == "finished"
    assert recorded.sandboxed == (bwrap.unavailable() is None)
    # Record i+1 ran in every confirmation round, and its ratio there is the score's denominator.
    conf = info.score.confirmation
    assert conf is not None and conf.next_record == "01-rate0.04" and len(conf.next_ms) == len(conf.candidate_ms) == 2
    assert all((run_dir / "confirm" / f"{k}-next" / "run.log").is_file() for k in range(2))
    est = info.score.estimate
    assert est is not None and est.next_in_rounds and est.next_ratio == pytest.approx(sum(conf.next_ratios) / 2)


def test_a_confirmation_without_record_i_plus_1_is_measured_again(toy_home: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "oracle", scaffold_args={"nodes": 1}, confirm_runs=1, calibration_runs=1)
    first = evaluate(cfg)
    run_dir = tmp_path / "results" / first.run_id
    old = json.loads((run_dir / "confirm.json").read_text())
    old.update(next_ms=[], next_record=None, candidate_ms=[1.0], reference_ms=[1000.0])
    (run_dir / "confirm.json").write_text(json.dumps(old))
    run = json.loads((run_dir / "run.json").read_text())
    run.update(status="running", score=None)
    (run_dir / "run.json").write_text(json.dumps(run))
    again = evaluate(cfg)
    assert again.score is not None and again.score.confirmation is not None
    assert again.score.confirmation.candidate_ms != [1.0], "a two-way pair is not completed, it is re-run"
    assert len(again.score.confirmation.next_ms) == 1


def test_null_scores_zero(toy_home: Path, tmp_path: Path) -> None:
    info = evaluate(_cfg(tmp_path, "null"))
    assert info.score is not None and info.score.fsr == 0.0
    # record i's own code is not re-measured against itself
    assert "unchanged" in info.score.note and info.score.confirmation is None
    assert not (tmp_path / "results" / info.run_id / "confirm.json").exists()
    df = collect(tmp_path / "results")
    assert list(df["model"]) == ["null"] and list(df["fsr"]) == [0.0]


def test_rerun_resumes_without_redoing(toy_home: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "oracle")
    first = evaluate(cfg)
    run_dir = tmp_path / "results" / first.run_id
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.glob("nodes/*/result.json")}
    again = evaluate(cfg.model_copy(update={"scaffold_args": {"nodes": 3}}))
    assert again.score is not None and again.score.nodes == 3
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_changed_settings_refuse_to_mix(toy_home: Path, tmp_path: Path) -> None:
    evaluate(_cfg(tmp_path, "null"))
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="other settings"):
        evaluate(_cfg(tmp_path, "null", scaffold_args={"nodes": 2, "initial_drafts": 1}))


def test_cli_eval_prints_fsr_and_writes_leaderboard(toy_home: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "eval",
            "--track",
            "toy",
            "--model",
            "oracle",
            "--results-dir",
            str(tmp_path / "r"),
            "--calibration-runs",
            "1",
            "--confirm-runs",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "FSR" in res.output
    assert (tmp_path / "r" / "leaderboard.csv").read_text().startswith("model,scaffold,hints,task,seed")
    # the oracle's answer never varies: one node by default, not the scaffold's twenty
    assert [p.name for p in (tmp_path / "r").glob("*/nodes/*")] == ["0"]
    res = runner.invoke(app, ["leaderboard", "--results-dir", str(tmp_path / "r")])
    assert res.exit_code == 0 and "oracle" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "gpt4"], "unknown model provider"),
        (["--model", "oracle", "--task", "toy-7"], "unknown task"),
        (["--model", "oracle", "--hints", "diagram"], "unknown hint level"),
        (["--model", "oracle", "--scaffold", "beam"], "unknown scaffold"),
        (["--model", "openai/gpt-4o"], "OPENAI_API_KEY"),
        (["--model", "anthropic/claude-sonnet-4-6"], "ANTHROPIC_API_KEY"),
    ],
)
def test_bad_input_is_one_clear_line(toy_home: Path, tmp_path: Path, args: list[str], message: str) -> None:
    res = runner.invoke(app, ["eval", "--track", "toy", "--results-dir", str(tmp_path / "r"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert not list((tmp_path / "r").glob("*/nodes/*")), "nothing may run before the input is checked"


def test_tasks_list_json_and_show(toy_home: Path) -> None:
    res = runner.invoke(app, ["tasks", "list", "--track", "toy", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.output)
    assert rows[0]["id"] == "toy-0" and rows[0]["track"] == "toy"
    assert rows[0]["hints"] == ["pseudocode", "text", "paper"]
    res = runner.invoke(app, ["tasks", "show", "toy-0"])
    assert res.exit_code == 0 and "RATE = RATE * 2" in res.output


def test_report_has_tables_and_chart(toy_home: Path, tmp_path: Path) -> None:
    evaluate(_cfg(tmp_path, "oracle", scaffold_args={"nodes": 1}, confirm_runs=1, calibration_runs=1))
    res = runner.invoke(app, ["report", "--results-dir", str(tmp_path / "results")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "results" / "report.md").read_text()
    assert "| oracle | flat | pseudocode | toy-0 |" in md
    assert (tmp_path / "results" / "fsr.png").read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64," in (tmp_path / "results" / "report.html").read_text()


def test_target_override_is_the_target_everywhere(toy_home: Path, tmp_path: Path) -> None:
    """A smoke run with a looser target judges nodes against that target, not the task's."""
    info = evaluate(_cfg(tmp_path, "null", target_val_loss=2.0, scaffold_args={"nodes": 1}, confirm_runs=1))
    assert info.score is not None and info.score.valid_nodes == 1
    transcript = (tmp_path / "results" / info.run_id / "nodes" / "0" / "transcript.md").read_text()
    assert "reaches 2.0 or lower" in transcript


def test_chain_out_of_order_at_a_smoke_target_is_undefined_not_a_crash(tmp_path: Path, monkeypatch) -> None:
    from harness.errors import ConfigError
    from tests.toytrack import write_toy_track

    monkeypatch.setenv("SPEEDRUN_HOME", str(write_toy_track(tmp_path / "home", rates=(0.04, 0.02))))
    info = evaluate(_cfg(tmp_path, "oracle", target_val_loss=1.5, scaffold_args={"nodes": 1}, calibration_runs=1))
    assert info.score is not None and info.score.fsr == 0.0 and "undefined" in info.score.note
    with pytest.raises(ConfigError, match="not faster"):
        evaluate(_cfg(tmp_path / "real", "oracle", scaffold_args={"nodes": 1}, calibration_runs=1))


def test_calibration_is_kept_per_thread_count(toy_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.eval.calibration import calibration_path
    from harness.manifests.tracks import load_track

    track = load_track("toy")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    default = calibration_path(track, "local", 1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    one = calibration_path(track, "local", 1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert len({default, one, calibration_path(track, "local", 1.0)}) == 3
    # and so are the runs' workspaces: two calibrations at once must not share one
    from harness.eval.calibration import calibration_runs_dir

    assert calibration_runs_dir(track, "local", 1.0) != calibration_runs_dir(track, "docker", 1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert calibration_runs_dir(track, "local", 1.0).name == one.stem


def test_calibrations_of_different_records_merge(toy_home: Path) -> None:
    """Two calibrations that run at once (one per core) keep each other's records."""
    from harness.eval.calibration import RecordTiming, calibration_path, load_calibration, save_calibration
    from harness.manifests.tracks import load_track

    track = load_track("toy")
    first, second = load_calibration(track, "local", 1.0), load_calibration(track, "local", 1.0)
    first.records["a"] = RecordTiming(record_id="a", code_sha256="0", times_ms=[1.0])
    save_calibration(track, first, only=["a"])
    second.records["b"] = RecordTiming(record_id="b", code_sha256="1", times_ms=[2.0])
    save_calibration(track, second, only=["b"])
    on_disk = load_calibration(track, "local", 1.0).records
    assert {rid: t.times_ms for rid, t in on_disk.items()} == {"a": [1.0], "b": [2.0]}
    path = calibration_path(track, "local", 1.0)
    assert [p.name for p in path.parent.iterdir() if not p.name.startswith(".")] == [path.name]


def test_pinned_docker_runs_have_their_own_reference_times(toy_home: Path, tmp_path: Path) -> None:
    """A calibration with one executor setting is not used for runs with another."""
    from harness.eval.calibration import RecordTiming, code_sha256, load_calibration, save_calibration
    from harness.eval.evaluate import Evaluation
    from harness.manifests.tracks import load_track

    track = load_track("toy")
    cal = load_calibration(track, "docker-cpuset0", 1.0)
    for rec in track.records()[:2]:
        cal.records[rec.id] = RecordTiming(record_id=rec.id, code_sha256=code_sha256(rec), times_ms=[1000.0])
    save_calibration(track, cal)

    def plan(**executor_args: object) -> dict[str, object]:
        cfg = _cfg(tmp_path, "oracle", executor="docker", executor_args={"image": "img", **executor_args})
        return Evaluation(cfg).reference_plan()

    pinned = plan(cpuset=0)
    assert pinned["source"] == "calibrated" and "docker-cpuset0-" in str(pinned["file"])
    assert plan(cpuset=1)["source"] == "calibrate"
    assert plan()["source"] == "calibrate"


def test_cli_calibrate_takes_executor_settings(toy_home: Path, tmp_path: Path) -> None:
    args = ["calibrate", "--track", "toy", "--runs", "1", "--records", "0", "--json"]
    res = runner.invoke(app, [*args, "--executor-arg", "max_log_bytes=100000"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{") :])
    assert list(out["records"]) == ["00-rate0.02"] and len(out["records"]["00-rate0.02"]["times_ms"]) == 1
    res = runner.invoke(app, [*args, "--executor-arg", "no_such_setting=1"])
    assert res.exit_code != 0 and "bad --executor-arg" in res.output


def test_record_i_plus_1_may_leave_untimed_what_it_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records validate at their own cadence (mini's 03 every 100 steps where 02 did every 200):
    record i+1's untimed share is one the task allows. Here each of record 01's 8 validations
    takes 0.4 s: 3.2 s more untimed than record 00, past record 00's 2 s margin. Held to record
    i alone the oracle's node, record 01 itself, was invalid; held to the larger share it is
    record 01's speed-up."""
    from tests.toytrack import write_toy_track

    monkeypatch.setenv("SPEEDRUN_HOME", str(write_toy_track(tmp_path / "home", val_s=(0.0, 0.4))))
    info = evaluate(_cfg(tmp_path, "oracle", scaffold_args={"nodes": 1}, calibration_runs=1, confirm_runs=2))
    assert info.score is not None and info.score.valid_nodes == 1, info.score and info.score.note
    ref = info.score.reference
    assert ref.t_next_untimed_s is not None and ref.t_ref_untimed_s is not None
    assert ref.t_next_untimed_s > ref.t_ref_untimed_s + 2.5
    assert 0.7 <= info.score.fsr <= 1.3
    conf = info.score.confirmation
    assert conf is not None and all(conf.candidate_valid) and len(conf.next_untimed_s) == 2
