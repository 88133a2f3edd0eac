"""Cheating candidates on the real mini track at smoke scale (a loose target, real training):
the harness's own evaluation of the saved model, not the printed loss, decides.

The candidates are whole-file answers served through a real OpenAI client from a scripted
server; each evaluation is the one a user runs, from calibration to score."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.eval.config import EvalConfig
from harness.eval.evaluate import evaluate
from harness.manifests.tracks import load_track
from harness.search.journal import Journal
from tests.fake_llm_server import FakeLLMServer, answer

SMOKE_TARGET = 2.6

# Real training of records 08 and 09 and of the cheats: minutes on a quiet 2-core machine. Written
# in a session whose machine was too loaded to run it (the harness stopped it as "too busy"), so
# it stays out of the default suite until it has run green: `pytest -m slow tests/test_cheats_mini.py`.
pytestmark = pytest.mark.slow


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


PRINT_ONLY = """import os
os.environ["NANOGPT_TRAIN_FILES"], os.environ["NANOGPT_VAL_FILES"], os.environ["NANOGPT_VAL_TOKENS"]
print("step:1/1 val_loss:2.5000 train_time:10ms step_avg:10.00ms", flush=True)
"""


def _lower_printed_loss(code: str) -> str:
    """Real training, but the printed loss is 0.3 better than the model's."""
    old = "    return total / n_seq\n"
    assert old in code
    return code.replace(old, "    return total / n_seq - 0.3\n")


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("print-only", lambda code: PRINT_ONLY, "saved no model"),
        ("lower-printed-loss", _lower_printed_loss, "measured"),
    ],
)
def test_a_printed_loss_that_the_model_does_not_back_is_invalid(
    name: str,
    make: object,
    reason: str,
    tmp_path: Path,
    server: FakeLLMServer,
    mini_data_dir: Path,
    shared_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPEEDRUN_CACHE", str(shared_cache))
    _, code = _record_i()
    assert callable(make)
    fsr, journal = _evaluate(tmp_path, server, mini_data_dir, make(code))
    node = journal.all()[0]
    assert node.status != "valid" and fsr == 0.0, (name, node.status, node.error)
    assert reason in (node.error or ""), (name, node.error)
