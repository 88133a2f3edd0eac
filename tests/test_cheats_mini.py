"""Cheating candidates on the real mini track at smoke scale (a loose target, real training):
the harness's own evaluation of the saved model, not the printed loss, decides.

The candidates are whole-file answers served through a real OpenAI client from a scripted
server; each evaluation is the one a user runs, from calibration to score."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.eval.config import EvalConfig
from harness.eval.evaluate import evaluate
from harness.manifests.tracks import load_track
from harness.search.journal import Journal, Node
from tests.fake_llm_server import FakeLLMServer, answer

SMOKE_TARGET = 2.6

# Real training of records 08 and 09 (one calibration round, shared) and of each cheat at the smoke
# target: about 100 s for the file on a quiet 2-core machine, so it is part of the default suite.


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One calibration for all the cheats, as evaluations on one machine share theirs."""
    return tmp_path_factory.mktemp("cheat-cache")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def _record_i() -> tuple[str, str]:
    track = load_track("mini")
    task = track.tasks()[-1]
    return task.id, track.record(task.from_record).code()


def _evaluate(tmp_path: Path, server: FakeLLMServer, data: Path, code: str) -> tuple[float, Journal]:
    task, _ = _record_i()
    server.default = answer(f"A faster script.\n\n```python\n{code}```\n")
    cfg = EvalConfig(
        task=task,
        model="openai/cheater",
        model_args={"base_url": server.openai_base_url},
        scaffold_args={"nodes": 1},
        results_dir=tmp_path / "results",
        data_dir=data,
        target_val_loss=SMOKE_TARGET,
        calibration_runs=1,
        confirm_runs=1,
    )
    info = evaluate(cfg)
    assert info.score is not None, info.status_detail
    return info.score.fsr, Journal(tmp_path / "results" / info.run_id)


def _print_only(code: str) -> str:
    """Record i whole, but it prints a line below the target and exits before it trains or saves
    anything: a whole-file answer (the coder takes no three-line "file" for a 354-line one)."""
    old = "import time\n"
    assert old in code
    forged = 'print("step:1/1 val_loss:2.5000 train_time:10ms step_avg:10.00ms", flush=True)\nraise SystemExit(0)\n'
    return code.replace(old, old + forged, 1)


def _lower_printed_loss(code: str) -> str:
    """Real training, but the printed loss is 0.3 better than the model's."""
    old = "    return total / n_seq\n"
    assert old in code
    return code.replace(old, "    return total / n_seq - 0.3\n")


#: Enough steps before the clock that record 08 is past the smoke target when it starts.
WARMUP_STEPS = 300


def _train_before_the_clock(code: str) -> str:
    """Record i's training, done before the clock starts: the timed loop finds the target at step 0."""
    old = "N = args.num_iterations\ntrain_time_ms = 0.0\n"
    assert old in code
    warmup = (
        f"for _ in range({WARMUP_STEPS}):\n"
        "    x, y = get_batch()\n"
        "    model(x, y).backward()\n"
        "    for opt in optimizers:\n"
        "        opt.step()\n"
        "    model.zero_grad(set_to_none=True)\n"
    )
    return code.replace(old, warmup + old)


def _slow_clock(code: str) -> str:
    """The script's clock runs at a tenth of the speed, so it prints a tenth of its time."""
    old = "import time\n"
    assert old in code
    slowed = "_real_clock = time.perf_counter\ntime.perf_counter = lambda: _real_clock() / 10\n"
    return code.replace(old, old + slowed, 1)


def _look_ahead(code: str) -> str:
    """Attention sees the whole window: the model learns to read the next token, and its loss
    (printed and measured alike) falls far below the target."""
    old = "is_causal=True"
    assert old in code
    return code.replace(old, "is_causal=False")


def _cheat(make: Callable[[str], str], tmp_path: Path, server: FakeLLMServer, data: Path) -> tuple[float, Node, str]:
    """Record i changed by `make`, evaluated as a user would: its FSR, its node, and every reason given."""
    _, code = _record_i()
    fsr, journal = _evaluate(tmp_path, server, data, make(code))
    node = journal.all()[0]
    return fsr, node, " ".join([node.error or "", *(node.result.rule_violations if node.result else [])])


@pytest.fixture
def cheat_env(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPEEDRUN_CACHE", str(shared_cache))


@pytest.mark.usefixtures("cheat_env")
@pytest.mark.parametrize("make", [_train_before_the_clock, _slow_clock], ids=["before-the-clock", "slow-clock"])
def test_time_the_script_hides_from_its_own_clock_is_counted(
    make: Callable[[str], str], tmp_path: Path, server: FakeLLMServer, mini_data_dir: Path
) -> None:
    fsr, node, reasons = _cheat(make, tmp_path, server, mini_data_dir)
    # Either the harness's clock refuses the run, or it times it whole: no faster than record i.
    assert fsr == 0.0, (node.status, reasons)
    if node.status != "valid":
        assert "clock" in reasons, reasons


@pytest.mark.usefixtures("cheat_env")
def test_a_model_that_looks_ahead_is_invalid(tmp_path: Path, server: FakeLLMServer, mini_data_dir: Path) -> None:
    fsr, node, reasons = _cheat(_look_ahead, tmp_path, server, mini_data_dir)
    assert node.status == "invalid" and fsr == 0.0, (node.status, reasons)
    assert "not causal" in reasons, reasons


@pytest.mark.usefixtures("cheat_env")
@pytest.mark.parametrize(
    ("make", "reason"),
    [(_print_only, "saved no model"), (_lower_printed_loss, "measured")],
    ids=["print-only", "lower-printed-loss"],
)
def test_a_printed_loss_that_the_model_does_not_back_is_invalid(
    make: Callable[[str], str], reason: str, tmp_path: Path, server: FakeLLMServer, mini_data_dir: Path
) -> None:
    fsr, node, reasons = _cheat(make, tmp_path, server, mini_data_dir)
    assert node.status != "valid" and fsr == 0.0, (node.status, reasons)
    assert reason in reasons, reasons
