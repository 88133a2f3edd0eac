"""`replay`: answers served back from a run's transcripts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.coder.transcript import Exchange, append_exchange, read_exchanges
from harness.errors import ConfigError
from harness.eval.log import read_run
from harness.models import CodingContext, Completion, Message, ModelError, Usage, get_model
from harness.models.replay import ReplayModel
from tests.fake_llm_server import FakeLLMServer, answer

ASK = [Message(role="system", content="edit"), Message(role="user", content="make it faster")]


def context(node: int | None, attempt: int = 0, task: str = "mini-0") -> CodingContext:
    return CodingContext(task_id=task, file_name="train.py", current_code="x = 1\n", node_id=node, attempt=attempt)


def record(run_dir: Path, node: int, attempt: int, text: str | None, *, task: str = "mini-0") -> None:
    usage = Usage(calls=1, input_tokens=900, output_tokens=100, cost_usd=0.01, latency_s=2.0)
    append_exchange(
        run_dir / "nodes" / str(node),
        Exchange(
            task_id=task,
            node=node,
            attempt=attempt,
            model="openai/o3",
            settings={"reasoning_effort": "high"},
            messages=ASK,
            completion=None if text is None else Completion(text=text, usage=usage, model="openai/o3-2025-04-16"),
            error="rate limited (gave up)" if text is None else None,
        ),
    )


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "results" / "run-1"
    record(run, 0, 0, "answer 0.0")
    record(run, 0, 1, "answer 0.1")
    record(run, 1, 0, None)  # a call that failed is not an answer
    record(run, 2, 0, "first try, superseded")
    record(run, 2, 0, "redone after resume")
    return run


def test_serves_the_recorded_answer_for_node_and_attempt(run_dir: Path) -> None:
    model = get_model("replay", {"replay_from": str(run_dir)})
    assert isinstance(model, ReplayModel)
    model.check_ready()
    first = model.generate(ASK, context(0))
    again = model.generate(ASK, context(0, attempt=1))
    assert (first.text, again.text) == ("answer 0.0", "answer 0.1")
    assert first.model == "openai/o3-2025-04-16"
    # This run spent nothing: tokens and cost are zero, the call is counted.
    assert first.usage == Usage(calls=1)


def test_the_last_recording_of_a_redone_node_wins(run_dir: Path) -> None:
    model = ReplayModel("replay", {"replay_from": str(run_dir)})
    assert model.generate(ASK, context(2)).text == "redone after resume"


@pytest.mark.parametrize(
    ("ctx", "words"),
    [
        (context(7), r"code answer for nodes/7 attempt 0 in .*nodes/7/transcript.jsonl"),
        (context(0, attempt=2), "nodes/0 attempt 2"),
        (context(1), "nodes/1 attempt 0"),
        (context(None), r"code answer for scaffold attempt 0 in .*scaffold/transcript.jsonl"),
        (context(0, task="mini-1"), "recorded for task mini-0, not mini-1"),
    ],
)
def test_missing_recording_is_a_permanent_model_error(run_dir: Path, ctx: CodingContext, words: str) -> None:
    model = ReplayModel("replay", {"replay_from": str(run_dir)})
    with pytest.raises(ModelError, match=words) as info:
        model.generate(ASK, ctx)
    assert info.value.permanent


def test_a_changed_prompt_still_replays_but_warns(run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = ReplayModel("replay", {"replay_from": str(run_dir)})
    other = [Message(role="user", content="a different prompt")]
    assert model.generate(other, context(0)).text == "answer 0.0"
    assert "asked differently" in caplog.text


def test_check_ready_needs_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--replay-from"):
        ReplayModel("replay").check_ready()
    with pytest.raises(ConfigError, match="not a run directory"):
        ReplayModel("replay", {"replay_from": str(tmp_path)}).check_ready()


def test_settings_name_the_source(run_dir: Path) -> None:
    assert ReplayModel("replay", {"replay_from": str(run_dir)}).settings() == {"replay_from": str(run_dir)}


def test_replay_reproduces_a_recorded_evaluation_exactly(toy_home: Path, tmp_path: Path) -> None:
    """Record an evaluation through the OpenAI provider, then replay it without a server or key."""
    edit = "train.py\n<<<<<<< SEARCH\nRATE = 0.02\n=======\nRATE = {rate}\n>>>>>>> REPLACE\n"
    common = ["--track", "toy", "--task", "toy-0", "--nodes", "2", "--calibration-runs", "1", "--confirm-runs", "0"]
    runner = CliRunner()
    with FakeLLMServer() as server:
        server.script(
            answer("I would rather not edit anything."),  # no edit blocks: the coder asks again
            answer(edit.format(rate="0.04")),
            answer(edit.format(rate="0.03")),
        )
        res = runner.invoke(
            app,
            ["eval", "--model", "openai/gpt-4o", "--base-url", server.openai_base_url, *common,
             "--results-dir", str(tmp_path / "recorded")],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        assert len(server.requests) == 3
    (recorded,) = [p for p in (tmp_path / "recorded").iterdir() if p.is_dir()]

    res = runner.invoke(
        app,
        ["eval", "--model", "replay", "--replay-from", str(recorded), *common,
         "--results-dir", str(tmp_path / "replayed")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (replayed,) = [p for p in (tmp_path / "replayed").iterdir() if p.is_dir()]

    for node in ("0", "1"):
        a, b = recorded / "nodes" / node, replayed / "nodes" / node
        assert (a / "diff.patch").read_text() == (b / "diff.patch").read_text()
        texts = [[ex.completion.text for ex in read_exchanges(d) if ex.completion] for d in (a, b)]
        assert texts[0] == texts[1]
    assert len(read_exchanges(replayed / "nodes" / "0")) == 2
    original, again = read_run(recorded), read_run(replayed)
    assert original is not None and again is not None
    assert original.score is not None and again.score is not None
    assert (again.score.nodes, again.score.valid_nodes) == (original.score.nodes, original.score.valid_nodes)
    assert original.usage.cost_usd > 0
    assert again.usage.cost_usd == 0 and again.usage.calls == 3
