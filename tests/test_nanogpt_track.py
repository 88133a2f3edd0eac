"""The nanogpt track end to end without a GPU or the network: its manifests, the listing and
showing of tasks after a fetch from a stand-in llm-speedrunner, the exact run each task's
`--dry-run` prints, GPU-count and container selection, and calibration through torchrun."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.errors import ConfigError
from harness.eval.config import EvalConfig
from harness.eval.evaluate import Evaluation
from harness.eval.setup import gpu_count, track_command
from harness.execution import get_executor
from harness.execution.images import BuildError, build_track_images, record_images
from harness.logparse import parse_log
from harness.manifests.fetch import fetch_records
from harness.manifests.tracks import load_track
from tests.test_fetch import make_speedrunner_repo, standin_time_ms
from tests.test_fineweb import write_fineweb

REPO = Path(__file__).resolve().parents[1]

#: The paper's re-measured times (llm-speedrunner results.json), ms, steps, val loss.
PAPER = {
    1: (2968348, 24576, 3.2766),
    2: (2209926, 9536, 3.2603),
    3: (1386147, 7000, 3.2813),
    4: (1301740, 6200, 3.2772),
    5: (949528, 5100, 3.2751),
    6: (766259, 5100, 3.275),
    7: (773072, 5100, 3.276),
    8: (662205, 4578, 3.2789),
    9: (505531, 3200, 3.2785),
    10: (477150, 3200, 3.2782),
    11: (442985, 3242, 3.2742),
    12: (317839, 1875, 3.2739),
    13: (289805, 1750, 3.2739),
    14: (273107, 1530, 3.2739),
    15: (241463, 1480, 3.2771),
    16: (232971, 1480, 3.2773),
    17: (220374, 1490, 3.2739),
    18: (211840, 1390, 3.277),
    19: (199442, 1395, 3.277),
    20: (188680, 1393, 3.2739),
    21: (184262, 1770, 3.2739),
}
#: The README's official record times, minutes.
OFFICIAL_MIN = [45, 31.4, 24.9, 22.3, 15.2, 13.1, 12.0, 10.8, 8.2, 7.8, 7.2, 5.03, 4.66, 4.41, 3.95, 3.80, 3.57, 3.4]
OFFICIAL_MIN += [3.142, 2.992, 2.933]
TASKS = [i for i in range(1, 21) if i != 6]


def era(index: int) -> str:
    return "2.5" if index <= 11 else "2.6" if index <= 18 else "2.7"


@pytest.fixture(scope="module")
def speedrunner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return make_speedrunner_repo(tmp_path_factory.mktemp("upstream") / "llm-speedrunner")


@pytest.fixture(scope="module")
def fetched_once(speedrunner: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("fetched-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEEDRUN_CACHE", str(cache))
        repo, sha = speedrunner
        fetch_records(str(repo), commit=sha)
    return cache


@pytest.fixture
def fetched(fetched_once: Path, isolated_cache: Path) -> Path:
    """A cache holding a fetch of the stand-in: copied, which is quicker than fetching each time."""
    for kind in ("records", "tasks"):
        shutil.copytree(fetched_once / kind, isolated_cache / kind)
    return isolated_cache


def _cli(command: str, *extra: str) -> Any:
    """Invoke `speedrun <command> <extra...>`: the command's words split on spaces, extra ones verbatim."""
    return CliRunner().invoke(app, [*command.split(), *extra])


# ---- manifests -----------------------------------------------------------------------------------


def test_records_carry_the_facts_of_the_chain() -> None:
    track = load_track("nanogpt")
    records = track.records()
    assert [r.index for r in records] == list(range(1, 22))
    assert [r.id for r in records] == sorted(r.id for r in records), "sorting ids gives the chain order"
    for rec, official in zip(records, OFFICIAL_MIN, strict=True):
        ms, steps, loss = PAPER[rec.index]
        assert rec.reference is not None
        assert (rec.reference.time_ms, rec.reference.steps, rec.reference.val_loss) == (ms, steps, loss)
        assert rec.reference.source == "paper (llm-speedrunner results.json)"
        assert rec.official_time_ms == pytest.approx(official * 60_000)
        assert rec.script == "train_gpt2.py"
        assert rec.settings["pytorch"] == era(rec.index)
        assert rec.image == f"speedrun-nanogpt:torch{era(rec.index)}"
        assert rec.date is not None and re.fullmatch(r"202[45]-\d\d-\d\d", rec.date)
        assert rec.upstream is None or re.fullmatch(r"records/\d{6}_\w+", rec.upstream)
    assert [r.date for r in records] == sorted(r.date or "" for r in records)


def test_tasks_are_the_papers_nineteen() -> None:
    track = load_track("nanogpt")
    assert (track.source, track.dataset) == ("fetched", "fineweb")
    assert (track.target_val_loss, track.val_tokens) == (3.28, 10485760)
    assert track.time_limit_s == 3600 and track.reference_times == "paper"
    tasks = track.tasks()
    assert [t.index for t in tasks] == TASKS
    ids = [r.id for r in track.records()]
    for task in tasks:
        assert task.id == f"nanogpt-{task.index}"
        assert (task.from_record, task.to_record) == (ids[task.index - 1], ids[task.index])
        assert task.title == track.record(task.to_record).title
        assert task.target_val_loss == 3.28


def test_the_project_ships_no_record_code_or_hints() -> None:
    shipped = {p.name for p in (REPO / "records" / "nanogpt").rglob("*") if p.is_file()}
    assert shipped == {"record.toml"}
    shipped = {p.name for p in (REPO / "tasks" / "nanogpt").rglob("*") if p.is_file()}
    assert shipped == {"track.toml", "task.toml"}


def test_record_one_log_format_is_parsed() -> None:
    # Records 1-2 of llm-speedrunner print validation lines without step_avg, amid llm.c-style lines.
    log = (
        "step:0/24576 val_loss:11.0093 train_time:0ms\n"
        "step    1/24576 | train loss 11.009 | norm 15.2 | lr 5.86e-06 | (1200.00 ms | 218453 tok/s)\n"
        "step:24576/24576 val_loss:3.2766 train_time:2968348ms\n"
    )
    parsed = parse_log(log)
    assert (parsed.val_loss, parsed.train_time_ms, parsed.step) == (3.2766, 2968348, 24576)


# ---- listing and showing -----------------------------------------------------------------------------


def test_tasks_list_before_and_after_fetch(speedrunner: tuple[Path, str], isolated_cache: Path) -> None:
    before = json.loads(_cli("tasks list --track nanogpt --json").output)
    assert len(before) == 19 and not any(row["available"] for row in before)
    repo, sha = speedrunner
    fetch_records(str(repo), commit=sha)
    after = json.loads(_cli("tasks list --track nanogpt --json").output)
    assert [row["id"] for row in after] == [f"nanogpt-{i}" for i in TASKS]
    for row in after:
        assert row["available"] is True
        assert row["hints"] == ["pseudocode", "text", "paper"]


@pytest.mark.parametrize("n", [1, 11, 20])
def test_tasks_show_prints_reference_times(fetched: Path, n: int) -> None:
    result = _cli(f"tasks show nanogpt-{n}")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for index in (n, n + 1):
        assert f"reference {PAPER[index][0] / 1000:.1f} s, {PAPER[index][1]} steps" in text
    assert "paper (llm-speedrunner results.json)" in text
    assert f"pseudocode {n} -> {n + 1}" in text


# ---- what a run would execute -------------------------------------------------------------------------


def test_dry_run_prints_container_command_environment_and_limits_for_every_task(fetched: Path) -> None:
    track = load_track("nanogpt")
    for n in TASKS:
        result = _cli(
            f"eval --track nanogpt --model oracle --task nanogpt-{n} --executor docker --references paper --dry-run"
        )
        assert result.exit_code == 0, result.output
        plan = json.loads(result.output)
        run = plan["run"]
        assert run["image"] == f"speedrun-nanogpt:torch{era(n)}"
        assert run["command"][-4:] == ["torchrun", "--standalone", "--nproc_per_node=8", "train_gpt2.py"]
        env = run["environment"]
        assert env["NANOGPT_TRAIN_FILES"] == "/data/fineweb_train_*.bin"
        assert env["NANOGPT_VAL_FILES"] == "/data/fineweb_val_*.bin"
        assert env["NANOGPT_VAL_TOKENS"] == "10485760"
        assert not any("KEY" in k for k in env)
        assert run["time_limit_s"] == 3600
        assert run["network_mode"] == "none" and run["read_only"] is True and run["user"] == "1000:1000"
        assert run["device_requests"][0]["count"] == -1  # all GPUs of the node
        limits = track.executors["docker"]
        assert (run["mem_limit"], run["pids_limit"], run["shm_size"]) == (
            limits["memory"],
            limits["pids_limit"],
            limits["shm_size"],
        )
        assert f"size={limits['tmpfs_size']}" in run["tmpfs"]["/tmp"]
        assert run["hostname"] == "localhost"  # torchrun --standalone rendezvous without a network
        assert plan["reference_times"]["source"] == "paper"
        ids = plan["records"]
        assert plan["reference_times"]["time_ms"] == {ids[0]: PAPER[n][0], ids[1]: PAPER[n + 1][0]}
        assert plan["reference_times"]["hardware"].startswith("8x NVIDIA H100")
        # The paper's times never stand alone: the best node is re-run beside record i here.
        assert (
            plan["confirmation"]["against"] == ids[0]
            and plan["confirmation"]["max_pairs"] == EvalConfig.model_fields["confirm_runs"].default
        )
        # The human change passes the auditor: no finding against record i, none in record i alone.
        assert len(plan["audit"]) == 2 and not any(plan["audit"].values()), plan["audit"]
    assert not (REPO / "results" / "nanogpt-1__oracle__flat__pseudocode__s0").exists()


def test_dry_run_measures_references_here_unless_told_otherwise(fetched: Path) -> None:
    result = _cli("eval --track nanogpt --model oracle --task nanogpt-5 --dry-run --confirm-runs 4")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["reference_times"]["source"] == "calibrate" and plan["reference_times"]["runs_per_record"] == 3
    assert plan["confirmation"]["max_pairs"] == 4
    bad = _cli("eval --track nanogpt --model oracle --task nanogpt-5 --dry-run --references guess")
    assert bad.exit_code == 2 and "--references must be measured or paper" in bad.output


def test_dry_run_on_the_local_executor_with_some_gpus(fetched: Path) -> None:
    result = _cli("eval --track nanogpt --model oracle --task nanogpt-19 --gpus 0,1,2,3 --dry-run")
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)["run"]
    assert run["command"] == ["torchrun", "--standalone", "--nproc_per_node=4", "train_gpt2.py"]
    assert run["env"]["CUDA_VISIBLE_DEVICES"] == "0,1,2,3"
    assert run["env"]["NANOGPT_TRAIN_FILES"].endswith("data/fineweb/fineweb_train_*.bin")


def test_dry_run_before_fetch_says_what_to_run(isolated_cache: Path) -> None:
    result = _cli("eval --track nanogpt --model oracle --task nanogpt-3 --dry-run")
    assert result.exit_code == 2
    assert "speedrun records fetch --track nanogpt" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("gpus", "count"), [(None, 8), ("all", 8), ("8", 8), ("2", 2), ("0,1,2,3", 4), ("device=1,3", 2), ("GPU-ab12", 1)]
)
def test_gpu_count(gpus: str | None, count: int) -> None:
    assert gpu_count(gpus) == count


@pytest.mark.parametrize("gpus", ["0", "none", "0;1", ""])
def test_gpu_count_refuses_what_leaves_no_gpu(gpus: str) -> None:
    if gpus == "":
        assert gpu_count(gpus) == 8
        return
    with pytest.raises(ConfigError, match="--gpus"):
        gpu_count(gpus)


def test_track_command_fills_in_only_the_placeholder() -> None:
    nanogpt = load_track("nanogpt")
    command = track_command(nanogpt, "2", local=False)
    assert command == ["torchrun", "--standalone", "--nproc_per_node=2", "train_gpt2.py"]
    assert track_command(nanogpt, None, local=True)[0] == "torchrun"  # torchrun is not rewritten to sys.executable
    mini = load_track("mini")
    assert track_command(mini, "not-a-gpu-spec", local=False) == mini.command  # no placeholder: --gpus unread


def test_executor_is_chosen_by_the_starting_records_era(fetched: Path) -> None:
    for n in (11, 12, 18, 19):
        ev = Evaluation(EvalConfig(task=f"nanogpt-{n}", model="oracle", executor="docker", gpus="0,1"))
        ex = ev.executor()
        assert ex.image == f"speedrun-nanogpt:torch{era(n)}"  # type: ignore[attr-defined]
        assert ex.gpus == "0,1"  # type: ignore[attr-defined]  # the flag beats the track's "all"
        assert ex.memory == load_track("nanogpt").executors["docker"]["memory"]  # type: ignore[attr-defined]


# ---- containers ------------------------------------------------------------------------------------------


def test_one_dockerfile_per_era_with_a_pinned_torch() -> None:
    images = record_images("nanogpt")
    assert sorted(images) == [f"speedrun-nanogpt:torch{e}" for e in ("2.5", "2.6", "2.7")]
    expected = {"2.5": ("2.5.1", "cuda12.4"), "2.6": ("2.6.0", "cuda12.6"), "2.7": ("2.7.1", "cuda12.6")}
    for image, context in images.items():
        text = (context / "Dockerfile").read_text()
        torch, cuda = expected[image.rpartition("torch")[2]]
        assert f"ARG BASE=pytorch/pytorch:{torch}-{cuda}-cudnn9-devel" in text
        assert f"ARG TORCH_VERSION={torch}" in text
        assert "USER 1000:1000" in text and "WORKDIR /workspace" in text
        assert "tiktoken" in text and "numpy" in text
        assert "RUN --mount" not in text  # the classic builder has no BuildKit syntax
    assert record_images("mini") == {}


def test_building_the_track_builds_every_era(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.execution import images as containers

    built: list[tuple[str | None, Path | None, str | None]] = []

    def fake_build(track: str, **kw: Any) -> str:
        built.append((kw.get("tag"), kw.get("context"), kw.get("base")))
        return str(kw.get("tag"))

    monkeypatch.setattr(containers, "build_image", fake_build)
    tags = build_track_images("nanogpt")
    assert tags == [f"speedrun-nanogpt:torch{e}" for e in ("2.5", "2.6", "2.7")]
    assert [c.name for _, c, _ in built if c] == ["torch2.5", "torch2.6", "torch2.7"]
    built.clear()
    one = build_track_images("nanogpt", tag="speedrun-nanogpt:torch2.6", base="my/base:1")
    assert one == ["speedrun-nanogpt:torch2.6"]
    assert built == [("speedrun-nanogpt:torch2.6", REPO / "containers/nanogpt/torch2.6", "my/base:1")]
    with pytest.raises(BuildError, match="pick one with --tag"):
        build_track_images("nanogpt", base="my/base:1")


# ---- reference times -------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun (from torch) is not on PATH")
def test_calibrate_through_torchrun_then_evaluations_use_it(fetched: Path, tmp_path: Path) -> None:
    data = write_fineweb(tmp_path / "fineweb", train=1)
    result = _cli("calibrate --track nanogpt --records 1,2 --runs 1 --gpus 1 --json --data-dir", str(data))
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{") :])
    assert {rid: o["times_ms"] for rid, o in out["records"].items()} == {
        "01-llmc-baseline": [standin_time_ms(1)],
        "02-tuned-lr-rotary": [standin_time_ms(2)],
    }

    ev = Evaluation(EvalConfig(task="nanogpt-1", model="oracle", data_dir=data, results_dir=tmp_path / "results"))
    assert ev.reference_plan()["source"] == "calibrated"
    ref = ev.reference(get_executor("local"), ev.measure_spec(ev_data(data)))
    assert (ref.source, ref.t_ref_ms, ref.t_next_ms) == ("calibrated", standin_time_ms(1), standin_time_ms(2))

    # Asked for, the paper's times, with a warning that names both machines.
    events: list[str] = []
    cfg2 = EvalConfig(
        task="nanogpt-2", model="oracle", data_dir=data, references="paper", results_dir=tmp_path / "results"
    )
    ev2 = Evaluation(cfg2, on_event=lambda e: events.append(e.message))
    ref2 = ev2.reference(get_executor("local"), ev2.measure_spec(ev_data(data)))
    assert (ref2.source, ref2.t_ref_ms, ref2.t_next_ms) == ("paper", PAPER[2][0], PAPER[3][0])
    assert ref2.hardware.startswith("8x NVIDIA H100")
    assert any("the paper's re-measurement on 8x NVIDIA H100" in m and "this machine has" in m for m in events)


def ev_data(root: Path) -> Any:
    from harness.data.fineweb import fineweb_data

    return fineweb_data(root)


def test_track_manifest_is_valid_toml_with_the_documented_command() -> None:
    data = tomllib.loads((REPO / "tasks" / "nanogpt" / "track.toml").read_text())
    assert data["command"] == ["torchrun", "--standalone", "--nproc_per_node={nproc_per_node}", "train_gpt2.py"]


def test_the_real_records_pass_the_auditor(isolated_cache: Path) -> None:
    """The human chain itself, where a clone of llm-speedrunner is at hand (it is not shipped):
    `SPEEDRUN_LLM_SPEEDRUNNER=/path/to/clone pytest tests/test_nanogpt_track.py -k real_records`.
    Every record i+1 against record i, and every record alone, with no finding at all."""
    from harness.audit import audit

    source = os.environ.get("SPEEDRUN_LLM_SPEEDRUNNER")
    if not source:
        pytest.skip("no clone of llm-speedrunner given (set SPEEDRUN_LLM_SPEEDRUNNER to its path)")
    fetch_records(source)
    track = load_track("nanogpt")
    findings = {}
    for task in track.tasks():
        before, after = track.record(task.from_record).code(), track.record(task.to_record).code()
        findings[task.id] = [str(f) for f in [*audit(after, baseline=before), *audit(before), *audit(after)]]
    assert len(findings) == 19 and not any(findings.values()), {k: v for k, v in findings.items() if v}
