"""`--gpus` read once (GpuSpec) and split between run slots; the engine hands each run its slot's share."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.execution.base import ExecResult, Executor, LineCallback, RunSpec
from harness.execution.docker import DockerExecutor
from harness.execution.gpus import GpuSpec, gpu_slots
from harness.execution.local import LocalExecutor


@pytest.mark.parametrize(
    ("value", "count", "ids", "processes"),
    [
        *[("all", None, (), 8), ("8", 8, (), 8), ("2", 2, (), 2), ("0,1,2,3", None, ("0", "1", "2", "3"), 4)],
        *[("device=1,3", None, ("1", "3"), 2), ("GPU-ab12", None, ("GPU-ab12",), 1)],
    ],
)
def test_parse(value: str, count: int | None, ids: tuple[str, ...], processes: int) -> None:
    spec = GpuSpec.parse(value)
    assert spec is not None and (spec.count, spec.ids, spec.processes()) == (count, ids, processes)
    assert GpuSpec.parse(str(spec)) == spec  # the spelling RunSpec carries reads back the same


@pytest.mark.parametrize("value", [None, "", "none"])
def test_no_gpus(value: str | None) -> None:
    assert GpuSpec.parse(value) is None


@pytest.mark.parametrize("value", ["0", "0;rm -rf", "1,,2"])
def test_refuses_what_names_no_gpu(value: str) -> None:
    with pytest.raises(ConfigError, match="--gpus"):
        GpuSpec.parse(value)


def test_eight_gpus_four_slots_two_each_disjoint() -> None:
    assert gpu_slots("8", 4, by="ids") == ["0,1", "2,3", "4,5", "6,7"]
    assert gpu_slots("0,1,2,3,4,5,6,7", 2, by="ids") == ["0,1,2,3", "4,5,6,7"]
    assert gpu_slots("all", 2, by="ids", available=4) == ["0,1", "2,3"]
    # A scheduler picks the devices: each job asks for its share.
    assert gpu_slots("8", 4, by="count") == ["2", "2", "2", "2"]
    assert gpu_slots("8", 1, by="ids") == ["8"] and gpu_slots(None, 3, by="ids") == [None, None, None]


def test_splits_that_cannot_be_fair_are_refused() -> None:
    with pytest.raises(ConfigError, match="split evenly"):
        gpu_slots("8", 3, by="ids")
    with pytest.raises(ConfigError, match="split evenly"):
        gpu_slots("2", 4, by="count")  # fewer GPUs than runs: they would share one
    with pytest.raises(ConfigError, match="no GPU count"):
        gpu_slots("all", 2, by="ids")


def test_a_slot_share_reaches_each_executor(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "show.py").write_text("import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'))\n")
    spec = RunSpec(
        command=[sys.executable, "show.py"], workspace=ws, log_path=tmp_path / "run.log", time_limit_s=30, gpus="2,3"
    )
    assert LocalExecutor().run(spec).ok
    assert (tmp_path / "run.log").read_text().strip() == "2,3"
    requests = DockerExecutor("img").describe(spec)["device_requests"]
    assert requests == [{"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["2", "3"]}]


class _Recorder(Executor):
    """Records the GPUs each run got, and which runs overlapped (a real executor underneath)."""

    name = "recorder"
    sandboxed = False

    def __init__(self) -> None:
        self.inner = LocalExecutor()
        self.lock = threading.Lock()
        self.running: dict[int, str | None] = {}
        self.overlaps: list[tuple[str | None, str | None]] = []

    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        if spec.slot is None:  # calibration runs: one at a time, outside the slots
            return self.inner.run(spec, on_line)
        with self.lock:
            self.overlaps += [(spec.gpus, other) for other in self.running.values()]
            self.running[spec.slot] = spec.gpus
        try:
            time.sleep(0.3)  # long enough for the other slot's run to start meanwhile
            return self.inner.run(spec, on_line)
        finally:
            with self.lock:
                del self.running[spec.slot]

    def describe(self, spec: RunSpec) -> dict[str, Any]:
        return {}


def test_engine_gives_concurrent_runs_disjoint_gpus(toy_home: Path, tmp_path: Path) -> None:
    from harness.eval.config import EvalConfig
    from harness.eval.evaluate import Evaluation

    cfg = EvalConfig(
        task="toy-0",
        model="oracle",
        scaffold_args={"nodes": 4},
        results_dir=tmp_path / "results",
        max_parallel=2,
        gpus="0,1,2,3",
        confirm_runs=0,
        calibration_runs=1,
    )
    ev = Evaluation(cfg)
    recorder = _Recorder()
    ev.executor = lambda: recorder  # type: ignore[method-assign]
    info = ev.run()
    assert info.status == "finished" and info.score is not None and info.score.valid_nodes == 4
    assert recorder.overlaps, "the two slots never ran at once"
    for mine, other in recorder.overlaps:
        assert mine in ("0,1", "2,3") and other in ("0,1", "2,3") and mine != other
