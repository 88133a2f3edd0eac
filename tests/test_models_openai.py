"""`openai/<model>` through the real SDK, against the fake server: what only this provider does.

What every provider does (settings errors, keys, retries, faults) is `test_models_conformance.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.coder.transcript import read_exchanges
from harness.errors import ConfigError
from harness.eval.log import read_run
from harness.events import Event
from harness.manifests.tracks import load_track
from harness.models import CallContext, Message
from harness.models.providers.openai import OpenAIModel
from tests.fake_llm_server import (
    FakeLLMServer,
    Reply,
    answer,
    bad_request,
    dropped,
    empty_choice,
    malformed,
    plain_json,
    rate_limited,
    record_change_answer,
)

CONTEXT = CallContext(task_id="mini-0", file_name="train.py", current_code="x = 1\n", node_id=3)
MESSAGES = [
    Message(role="system", content="You edit training scripts."),
    Message(role="user", content="Make it faster."),
]


pytestmark = pytest.mark.usefixtures("model_env")


def make(server: FakeLLMServer, spec: str = "openai/gpt-4o", **args: Any) -> OpenAIModel:
    model = OpenAIModel(spec, {"base_url": server.openai_base_url, "retry_base_s": 0.01, **args})
    model.sleep = lambda _: None
    return model


# ---- answers, usage, settings ----------------------------------------------------------------------


def test_answer_with_usage_and_cost(server: FakeLLMServer) -> None:
    server.script(answer("Here is my plan.", input_tokens=1000, cached_tokens=400, output_tokens=200))
    model = make(server)
    completion = model.generate(MESSAGES, CONTEXT)

    assert completion.text == "Here is my plan."
    assert completion.finish_reason == "stop"
    assert completion.model == "openai/gpt-4o"
    u = completion.usage
    assert (u.calls, u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (1, 1000, 200, 400, 0)
    assert u.cost_usd == pytest.approx((600 * 2.50 + 400 * 1.25 + 200 * 10.00) / 1e6)
    assert u.unpriced_calls == 0
    assert u.latency_s > 0

    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "gpt-4o"
    assert request.body["messages"] == [
        {"role": "system", "content": "You edit training scripts."},
        {"role": "user", "content": "Make it faster."},
    ]
    assert request.body["temperature"] == 0.7
    assert "reasoning_effort" not in request.body
    # The default cap: room for the (one-line) script and a plan.
    assert request.body["max_tokens"] == 4096 and "max_completion_tokens" not in request.body
    assert request.body["stream"] is True and request.body["stream_options"] == {"include_usage": True}
    # A local server needs no key, but the SDK must still send one.
    assert request.headers["authorization"] == "Bearer no-key-needed"


def test_reasoning_model_gets_effort_and_no_temperature(server: FakeLLMServer) -> None:
    server.script(answer("ok", output_tokens=900, reasoning_tokens=700))
    model = make(server, "openai/o3-mini", max_tokens=4000)
    completion = model.generate(MESSAGES, CONTEXT)

    body = server.requests[0].body
    assert body["reasoning_effort"] == "medium"
    assert "temperature" not in body
    assert body["max_completion_tokens"] == 4000 and "max_tokens" not in body
    assert completion.usage.reasoning_tokens == 700
    assert completion.usage.output_tokens == 900
    assert model.settings()["reasoning_effort"] == "medium"
    assert "temperature" not in model.settings()


def test_a_reasoning_model_gets_room_to_think_by_default(server: FakeLLMServer) -> None:
    make(server, "openai/o4-mini").generate(MESSAGES, CONTEXT)
    assert server.requests[0].body["max_completion_tokens"] == 4096 + 16384


def test_reasoning_text_streamed_beside_the_answer_is_progress_not_answer(server: FakeLLMServer) -> None:
    server.script(answer("the answer", thinking="let me think about the learning rate " * 30, chunk_delay_s=0.01))
    model = make(server, "openai/deepseek-r1", reasoning=True)
    events: list[Event] = []
    model.on_event, model.progress_every_s = events.append, 0.02
    assert model.generate(MESSAGES, CONTEXT).text == "the answer"
    # More than the ten characters of the answer: the thinking counted as progress.
    assert max(e.data["tokens"] for e in events if e.kind == "model_progress") > 20


def test_settings_from_cli_strings_reach_the_request(server: FakeLLMServer) -> None:
    # `--model-arg` values may arrive as strings; they are validated and converted.
    model = make(server, "openai/gpt-4.1", temperature="0.2", max_tokens="512", seed="7")
    model.generate(MESSAGES, CONTEXT)
    body = server.requests[0].body
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 512, 7)
    assert "max_completion_tokens" not in body
    settings = model.settings()
    assert settings["model"] == "gpt-4.1" and settings["temperature"] == 0.2
    assert settings["base_url"] == server.openai_base_url


def test_reasoning_effort_and_forced_reasoning_for_a_local_model(server: FakeLLMServer) -> None:
    model = make(server, "openai/gpt-oss-20b", reasoning_effort="high")
    model.generate(MESSAGES, CONTEXT)
    body = server.requests[0].body
    assert body["reasoning_effort"] == "high" and "temperature" not in body


@pytest.mark.parametrize(
    ("spec", "args", "words"),
    [
        ("openai/o3", {"temperature": 0.5}, "reasoning model"),
        ("openai/gpt-4o", {"reasoning": False, "reasoning_effort": "low"}, "reasoning_effort"),
    ],
)
def test_bad_settings_fail_before_any_call(spec: str, args: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        OpenAIModel(spec, args)


def test_prices_argument_overrides_the_table(server: FakeLLMServer, tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[openai]\n"my-local-coder" = { input = 1.0, output = 2.0 }\n')
    model = make(server, "openai/my-local-coder", prices=str(prices))
    usage = model.generate(MESSAGES, CONTEXT).usage
    assert usage.cost_usd == pytest.approx((120 * 1.0 + 40 * 2.0) / 1e6) and usage.unpriced_calls == 0


# ---- keys and endpoints ----------------------------------------------------------------------------


def test_api_openai_com_needs_a_key_but_a_local_server_does_not() -> None:
    assert OpenAIModel("openai/gpt-4o", {"base_url": "https://api.openai.com/v1"}).uses_vendor
    assert OpenAIModel("openai/gpt-4o", {"base_url": "https://eu.api.openai.com/v1"}).uses_vendor
    assert not OpenAIModel("openai/llama", {"base_url": "http://localhost:8000/v1"}).uses_vendor
    assert not OpenAIModel("openai/llama", {"base_url": "https://notopenai.com/v1"}).uses_vendor
    OpenAIModel("openai/llama", {"base_url": "http://localhost:8000/v1"}).check_ready()


# ---- a whole evaluation through the provider ----------------------------------------------------------

#: The toy task's human change (tests/toytrack.py), in the edit format the coder asks for.
TOY_EDIT = "Double the decay rate.\n\ntrain.py\n<<<<<<< SEARCH\nRATE = 0.02\n=======\nRATE = 0.04\n>>>>>>> REPLACE\n"


def eval_args(results: Path, *extra: str) -> list[str]:
    return [
        "eval",
        "--track",
        "toy",
        "--task",
        "toy-0",
        "--results-dir",
        str(results),
        "--calibration-runs",
        "1",
        "--confirm-runs",
        "0",
        *extra,
    ]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy track's reference times, calibrated once for this file's evaluations."""
    return tmp_path_factory.mktemp("shared-cache")


def test_cli_eval_runs_and_scores_a_node_through_openai(
    toy_home: Path, tmp_path: Path, server: FakeLLMServer, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEEDRUN_CACHE", str(shared_cache))
    prices = tmp_path / "prices.toml"
    prices.write_text('[openai]\n"test-model" = { input = 2.0, cached_input = 1.0, output = 8.0 }\n')
    server.script(
        rate_limited(retry_after="0"),
        answer(TOY_EDIT, input_tokens=1500, cached_tokens=500, output_tokens=60),
    )
    results = tmp_path / "results"
    args = ["--model", "openai/test-model", "--base-url", server.openai_base_url, "--nodes", "1"]
    args += ["--model-arg", f"prices={prices}", "--model-arg", "retry_base_s=0.01"]
    res = CliRunner().invoke(app, eval_args(results, *args))
    assert res.exit_code == 0, res.output
    assert "rate limited (429)" in res.output  # the wait was shown, not silent

    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    info = read_run(run_dir)
    assert info is not None and info.status == "finished" and info.score is not None
    assert info.score.valid_nodes == 1 and info.score.fsr > 0.5
    assert "RATE = 0.04" in (run_dir / "nodes" / "0" / "workspace" / "train.py").read_text()
    assert '"status": "valid"' in (run_dir / "nodes" / "0" / "result.json").read_text()

    expected_cost = (1000 * 2.0 + 500 * 1.0 + 60 * 8.0) / 1e6
    assert (info.usage.calls, info.usage.input_tokens, info.usage.output_tokens) == (1, 1500, 60)
    assert info.usage.cost_usd == pytest.approx(expected_cost) and info.usage.unpriced_calls == 0
    assert info.model_settings["temperature"] == 0.7
    (exchange,) = read_exchanges(run_dir / "nodes" / "0")
    assert exchange.completion is not None and exchange.completion.usage.cached_tokens == 500
    assert exchange.settings["model"] == "test-model"
    board = (results / "leaderboard.csv").read_text().splitlines()
    cost_col = board[0].split(",").index("cost_usd")
    assert float(board[1].split(",")[cost_col]) == pytest.approx(round(expected_cost, 4))
    assert [r.body["model"] for r in server.requests] == ["test-model", "test-model"]


@pytest.mark.parametrize(
    ("broken", "words"),
    [
        (bad_request("maximum context length exceeded"), "maximum context length exceeded"),
        (plain_json(), "stream=false"),
        (empty_choice(), "no choices in the stream"),
        (dropped(), "peer closed connection"),
        (malformed(), "malformed response"),
    ],
    ids=["bad request", "plain JSON", "empty choice", "cut stream", "invalid JSON"],
)
def test_a_failed_call_fails_the_node_not_the_evaluation(
    toy_home: Path,
    tmp_path: Path,
    server: FakeLLMServer,
    shared_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    broken: Reply,
    words: str,
) -> None:
    monkeypatch.setenv("SPEEDRUN_CACHE", str(shared_cache))
    server.script(broken, answer(TOY_EDIT))
    results = tmp_path / "results"
    args = ["--model", "openai/test-model", "--base-url", server.openai_base_url, "--nodes", "2"]
    res = CliRunner().invoke(app, eval_args(results, *args, "--model-arg", "max_retries=0"))
    assert res.exit_code == 0, res.output
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    info = read_run(run_dir)
    assert info is not None and info.status == "finished" and info.score is not None
    assert (info.score.nodes, info.score.valid_nodes) == (2, 1)
    failed = (run_dir / "nodes" / "0" / "result.json").read_text()
    assert '"status": "failed"' in failed and words in failed
    assert words in (run_dir / "nodes" / "0" / "transcript.md").read_text()


def test_max_cost_refuses_a_model_without_a_price(toy_home: Path, tmp_path: Path, server: FakeLLMServer) -> None:
    args = ["--model", "openai/test-model", "--base-url", server.openai_base_url, "--max-cost", "2"]
    res = CliRunner().invoke(app, eval_args(tmp_path / "results", *args))
    assert res.exit_code != 0 and "has no price" in res.output and "--price IN,OUT" in res.output
    assert server.requests == []


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_mini_smoke_eval_through_each_provider(
    provider: str,
    tmp_path: Path,
    server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """`speedrun eval --track mini` with real training, the model answering from the fake server."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("real training for minutes: run with -m slow")
    tasks = load_track("mini").tasks()
    if not tasks:
        pytest.skip("the mini track has no task yet")
    mini_data_dir: Path = request.getfixturevalue("mini_data_dir")
    server.default = record_change_answer("mini", tasks[0].id)
    if provider == "openai":
        model = ["--model", "openai/test-model", "--base-url", server.openai_base_url]
    else:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
        model = ["--model", "anthropic/claude-sonnet-4-6"]
    results = tmp_path / "results"
    args = ["eval", "--track", "mini", "--task", tasks[0].id, *model, "--nodes", "1", "--target-val-loss", "2.6"]
    args += ["--data-dir", str(mini_data_dir), "--results-dir", str(results)]
    args += ["--calibration-runs", "1", "--confirm-runs", "0"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output

    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    info = read_run(run_dir)
    assert info is not None and info.status == "finished" and info.score is not None
    assert info.score.valid_nodes == 1
    log = (run_dir / "nodes" / "0" / "run.log").read_text()
    assert " val_loss:" in log and "train_time:" in log
    assert (info.usage.calls, info.usage.input_tokens, info.usage.output_tokens) == (1, 6000, 900)
    assert info.usage.unpriced_calls == (1 if provider == "openai" else 0)
    assert (info.usage.cost_usd > 0) == (provider == "anthropic")
