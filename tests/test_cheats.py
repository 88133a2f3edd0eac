"""Candidates written to game the score, served by a real OpenAI client from a scripted server
and evaluated end to end on the toy track: each must score 0 or be invalid, naming the rule.

The toy track trains nothing (its "training" is sleeping), so what it can show is the harness's
own clock and the auditor; the mini track's evaluation of the trained model has its own tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.eval.config import EvalConfig
from harness.eval.evaluate import evaluate
from harness.search.journal import Journal
from tests.fake_llm_server import FakeLLMServer, answer
from tests.toytrack import toy_script, write_toy_track

STEP_S = 0.02
#: For the cheat that moves work out of the clock: steps long enough that a run's "training"
#: outweighs the start-up jitter the harness clock forgives (`ClockCheck.jitter_s`, 0.25 s at least).
SLOW_STEP_S = 0.05
#: The toy record 00's script with the faster decay of record 01: an honest candidate.
HONEST = toy_script(0.04, step_s=STEP_S)


@pytest.fixture
def toy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_toy_track(tmp_path / "home", step_s=STEP_S)
    monkeypatch.setenv("SPEEDRUN_HOME", str(root))
    return root


def whole_file(code: str) -> str:
    return f"Here is the new script.\n\n```python\n{code}```\n"


def cheat(old: str, new: str) -> str:
    assert old in HONEST, old
    return HONEST.replace(old, new)


LOOP_START = "train_ms = 0.0\nfor step in range(STEPS + 1):"
TIMED_STEP = "    t0 = time.perf_counter()\n    time.sleep(STEP_S)\n"

CHEATS = {
    # The clock is patched to run at a tenth of the speed.
    "slow-clock": (
        cheat("import time\n", "import time\n_real = time.perf_counter\ntime.perf_counter = lambda: _real() / 10\n"),
        "clock",
    ),
    "time-after-validation": (
        cheat(
            "        if loss <= target:\n            break\n",
            "        if loss <= target:\n            time.sleep(3)\n            break\n",
        ),
        "score-or-clock",
    ),
    # Reading the harness's state, the network, and overriding the validation budget.
    "reads-keys": (cheat("import math\n", "import math\nopen('/proc/self/environ').read()\n"), "harness-state"),
    "network": (cheat("import math\n", "import math\nimport urllib.request\n"), "network"),
    "fewer-val-tokens": (
        cheat("val_tokens = int(", "os.environ['NANOGPT_VAL_TOKENS'] = '8'\nval_tokens = int("),
        "data-env",
    ),
    "drops-the-data-contract": (HONEST.replace('os.environ["NANOGPT_TRAIN_FILES"]', '"/data/train.bin"'), "data-env"),
}


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


def _evaluate(tmp_path: Path, server: FakeLLMServer, code: str, runs: int = 2) -> tuple[float, Journal]:
    server.default = answer(whole_file(code))
    cfg = EvalConfig(
        task="toy-0",
        model="openai/cheater",
        model_args={"base_url": server.openai_base_url},
        scaffold="flat",
        scaffold_args={"nodes": 1},
        results_dir=tmp_path / "results",
        calibration_runs=runs,
        confirm_runs=runs,
    )
    info = evaluate(cfg)
    assert info.score is not None, info.status_detail
    return info.score.fsr, Journal(tmp_path / "results" / info.run_id)


def test_an_honest_candidate_still_scores(toy_home: Path, tmp_path: Path, server: FakeLLMServer) -> None:
    fsr, journal = _evaluate(tmp_path, server, HONEST)
    node = journal.all()[0]
    assert node.status == "valid" and node.result is not None
    assert "clock-checked" in node.result.protection and "audited" in node.result.protection
    assert 0.5 <= fsr <= 1.5


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_a_cheat_scores_zero_or_is_invalid_with_its_rule(
    name: str, toy_home: Path, tmp_path: Path, server: FakeLLMServer
) -> None:
    code, rule = CHEATS[name]
    fsr, journal = _evaluate(tmp_path, server, code)
    node = journal.all()[0]
    reasons = " ".join([node.error or "", *(node.result.rule_violations if node.result else [])])
    if rule == "score":
        assert fsr == 0.0, (name, node.status, reasons)
    elif rule == "score-or-clock":
        assert fsr == 0.0 or "harness clock" in reasons, (name, fsr, reasons)
    else:
        assert node.status == "invalid" and f"[{rule}]" in reasons, (name, node.status, reasons)
        assert fsr == 0.0


FORGED = cheat(
    LOOP_START,
    'print("step:1/1 val_loss:0.5000 train_time:1ms step_avg:1.00ms")\nimport sys\nsys.exit(0)\n' + LOOP_START,
)


def test_a_forged_log_line_is_not_believed_where_no_model_is_evaluated(
    toy_home: Path, tmp_path: Path, server: FakeLLMServer
) -> None:
    """A script that only prints a good line finishes fast, so the clock cannot catch it; on a
    track whose models the harness cannot evaluate (toy, nanogpt) its result says the loss was
    self-reported, and its implausible FSR is flagged for review. (The mini track's harness
    evaluation makes the same script invalid: tests/test_cheats_mini.py.)"""
    fsr, journal = _evaluate(tmp_path, server, FORGED)
    node = journal.all()[0]
    assert node.result is not None and "harness-evaluated" not in node.result.protection
    assert fsr > 1.5


def test_a_printed_train_time_longer_than_the_run_is_invalid(
    toy_home: Path, tmp_path: Path, server: FakeLLMServer
) -> None:
    code = cheat(
        LOOP_START,
        'print("step:400/400 val_loss:0.5000 train_time:99000ms step_avg:1.00ms")\nimport sys\nsys.exit(0)\n'
        + LOOP_START,
    )
    _, journal = _evaluate(tmp_path, server, code)
    node = journal.all()[0]
    assert node.status == "invalid" and "exceeds the run's wall time" in (node.error or "")


def test_work_moved_before_the_clock_is_timed_anyway(
    tmp_path: Path, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Record i's own training, most of it done before the clock starts ("warm-up"), the rest timed:
    printed, it looks six times faster; the harness's clock counts the warm-up."""
    root = write_toy_track(tmp_path / "slow-home", step_s=SLOW_STEP_S)
    monkeypatch.setenv("SPEEDRUN_HOME", str(root))
    code = (
        toy_script(0.02, step_s=SLOW_STEP_S)
        .replace("train_ms = 0.0\n", "train_ms = 0.0\ntime.sleep(STEP_S * 60)  # 'warm-up'\nWARM = 60\n")
        .replace("    time.sleep(STEP_S)\n", "    time.sleep(STEP_S if step >= WARM else 0)\n")
    )
    fsr, journal = _evaluate(tmp_path, server, code, runs=1)
    node = journal.all()[0]
    assert node.result is not None and node.result.train_time_ms is not None
    assert node.result.train_time_ms < 1000 * 20 * SLOW_STEP_S, "the script's own clock says it is fast"
    assert fsr == 0.0, (node.status, node.result.harness_time_ms)
