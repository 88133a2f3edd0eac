"""`openai/<model>` through the real SDK, against the fake server; and the shared retry policy."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.coder.transcript import read_exchanges
from harness.errors import ConfigError
from harness.eval.log import read_run
from harness.manifests.tracks import load_track
from harness.models import CodingContext, Message, ModelError, get_model
from harness.models import base as models_base
from harness.models.openai import OpenAIModel
from harness.models.retry import RetrySettings, backoff, parse_retry_after
from tests.fake_llm_server import (
    FakeLLMServer,
    answer,
    bad_request,
    dropped,
    error,
    malformed,
    rate_limited,
    record_change_answer,
    server_error,
)

CONTEXT = CodingContext(task_id="mini-0", file_name="train.py", current_code="x = 1\n", node_id=3)
MESSAGES = [
    Message(role="system", content="You edit training scripts."),
    Message(role="user", content="Make it faster."),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, endpoint or `.env` from the developer's machine leaks into these tests."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SPEEDRUN_PRICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models_base, "_dotenv_loaded", False)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


class Recorder:
    """Stands in for `time.sleep` and the progress display."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.statuses: list[str] = []


def make(server: FakeLLMServer, spec: str = "openai/gpt-4o", **args: Any) -> tuple[OpenAIModel, Recorder]:
    model = OpenAIModel(spec, {"base_url": server.openai_base_url, "retry_base_s": 0.01, **args})
    rec = Recorder()
    model.sleep = rec.waits.append
    model.on_status = rec.statuses.append
    return model, rec


# ---- answers, usage, settings ----------------------------------------------------------------------


def test_answer_with_usage_and_cost(server: FakeLLMServer) -> None:
    server.script(answer("Here is my plan.", input_tokens=1000, cached_tokens=400, output_tokens=200))
    model, rec = make(server)
    completion = model.generate(MESSAGES, CONTEXT)

    assert completion.text == "Here is my plan."
    assert completion.finish_reason == "stop"
    assert completion.model == "openai/gpt-4o"
    u = completion.usage
    assert (u.calls, u.input_tokens, u.output_tokens, u.cached_tokens, u.reasoning_tokens) == (1, 1000, 200, 400, 0)
    assert u.cost_usd == pytest.approx((600 * 2.50 + 400 * 1.25 + 200 * 10.00) / 1e6)
    assert u.unpriced_calls == 0
    assert u.latency_s > 0
    assert rec.waits == [] and rec.statuses == []

    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "gpt-4o"
    assert request.body["messages"] == [
        {"role": "system", "content": "You edit training scripts."},
        {"role": "user", "content": "Make it faster."},
    ]
    assert request.body["temperature"] == 0.7
    assert "reasoning_effort" not in request.body
    assert "max_tokens" not in request.body and "max_completion_tokens" not in request.body
    # A local server needs no key, but the SDK must still send one.
    assert request.headers["authorization"] == "Bearer no-key-needed"


def test_reasoning_model_gets_effort_and_no_temperature(server: FakeLLMServer) -> None:
    server.script(answer("ok", output_tokens=900, reasoning_tokens=700))
    model, _ = make(server, "openai/o3-mini", max_tokens=4000)
    completion = model.generate(MESSAGES, CONTEXT)

    body = server.requests[0].body
    assert body["reasoning_effort"] == "medium"
    assert "temperature" not in body
    assert body["max_completion_tokens"] == 4000 and "max_tokens" not in body
    assert completion.usage.reasoning_tokens == 700
    assert completion.usage.output_tokens == 900
    assert model.settings()["reasoning_effort"] == "medium"
    assert "temperature" not in model.settings()


def test_settings_from_cli_strings_reach_the_request(server: FakeLLMServer) -> None:
    # `--model-arg` values may arrive as strings; they are validated and converted.
    model, _ = make(server, "openai/gpt-4.1", temperature="0.2", max_tokens="512", seed="7")
    model.generate(MESSAGES, CONTEXT)
    body = server.requests[0].body
    assert (body["temperature"], body["max_tokens"], body["seed"]) == (0.2, 512, 7)
    assert "max_completion_tokens" not in body
    settings = model.settings()
    assert settings["model"] == "gpt-4.1" and settings["temperature"] == 0.2
    assert settings["base_url"] == server.openai_base_url


def test_reasoning_effort_and_forced_reasoning_for_a_local_model(server: FakeLLMServer) -> None:
    model, _ = make(server, "openai/gpt-oss-20b", reasoning_effort="high")
    model.generate(MESSAGES, CONTEXT)
    body = server.requests[0].body
    assert body["reasoning_effort"] == "high" and "temperature" not in body


@pytest.mark.parametrize(
    ("spec", "args", "words"),
    [
        ("openai/o3", {"temperature": 0.5}, "reasoning model"),
        ("openai/gpt-4o", {"temprature": 0.5}, "no setting 'temprature'"),
        ("openai/gpt-4o", {"temperature": "hot"}, "temperature"),
        ("openai/gpt-4o", {"reasoning": False, "reasoning_effort": "low"}, "reasoning_effort"),
        ("openai", {}, "openai/<model>"),
    ],
)
def test_bad_settings_fail_before_any_call(spec: str, args: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        OpenAIModel(spec, args)


def test_registry_creates_the_provider(server: FakeLLMServer) -> None:
    model = get_model("openai/gpt-4o", {"base_url": server.openai_base_url})
    assert isinstance(model, OpenAIModel)
    model.check_ready()


def test_answer_without_edit_blocks_is_returned_as_is(server: FakeLLMServer) -> None:
    prose = "I think the learning rate is too high, but I will not change anything."
    server.script(answer(prose))
    model, _ = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == prose


def test_unknown_model_costs_nothing_and_is_flagged(server: FakeLLMServer) -> None:
    model, _ = make(server, "openai/my-local-coder")
    usage = model.generate(MESSAGES, CONTEXT).usage
    assert usage.cost_usd == 0.0 and usage.unpriced_calls == 1 and usage.input_tokens == 120


def test_prices_argument_overrides_the_table(server: FakeLLMServer, tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[openai]\n"my-local-coder" = { input = 1.0, output = 2.0 }\n')
    model, _ = make(server, "openai/my-local-coder", prices=str(prices))
    usage = model.generate(MESSAGES, CONTEXT).usage
    assert usage.cost_usd == pytest.approx((120 * 1.0 + 40 * 2.0) / 1e6) and usage.unpriced_calls == 0


# ---- keys and endpoints ----------------------------------------------------------------------------


def test_missing_key_for_openai_fails_early_naming_the_variable() -> None:
    model = OpenAIModel("openai/gpt-4o")
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as info:
        model.check_ready()
    assert "\n" not in str(info.value)


def test_key_comes_from_dotenv_without_overriding_the_environment(
    server: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\nOPENAI_BASE_URL=http://127.0.0.1:9/v1\n")
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    model = OpenAIModel("openai/gpt-4o", {"retry_base_s": 0.01})
    model.check_ready()
    model.generate(MESSAGES, CONTEXT)
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-dotenv"
    assert model.base_url == server.openai_base_url


def test_api_openai_com_needs_a_key_but_a_local_server_does_not() -> None:
    assert OpenAIModel("openai/gpt-4o", {"base_url": "https://api.openai.com/v1"}).uses_openai
    assert not OpenAIModel("openai/llama", {"base_url": "http://localhost:8000/v1"}).uses_openai
    OpenAIModel("openai/llama", {"base_url": "http://localhost:8000/v1"}).check_ready()


# ---- faults ----------------------------------------------------------------------------------------


def test_rate_limit_honours_retry_after_then_succeeds(server: FakeLLMServer) -> None:
    server.script(rate_limited(retry_after="3"), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert len(server.requests) == 2
    assert 3.0 <= rec.waits[0] <= 3.0 + 0.01
    assert rec.statuses == ["rate limited (429): Rate limit reached, retrying in 3.0 s (1/6)"]


def test_retry_after_ms_is_preferred(server: FakeLLMServer) -> None:
    server.script(rate_limited(retry_after="30", retry_after_ms="1500"), answer("done"))
    model, rec = make(server)
    model.generate(MESSAGES, CONTEXT)
    assert 1.5 <= rec.waits[0] <= 1.51


def test_server_error_then_success(server: FakeLLMServer) -> None:
    server.script(server_error(500), server_error(503), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert len(rec.waits) == 2
    assert rec.statuses[0].startswith("server error (500)")
    assert rec.statuses[1].startswith("service unavailable (503)")


def test_permanent_bad_request_fails_at_once(server: FakeLLMServer) -> None:
    server.script(bad_request("This model's maximum context length is 128000 tokens"))
    model, rec = make(server)
    with pytest.raises(ModelError, match=r"bad request \(400\): This model's maximum context length") as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent
    assert len(server.requests) == 1 and rec.waits == []


@pytest.mark.parametrize("status", [401, 403, 404, 413, 422])
def test_other_client_errors_are_permanent(server: FakeLLMServer, status: int) -> None:
    server.script(error(status, "nope"))
    model, rec = make(server)
    with pytest.raises(ModelError) as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent and rec.waits == []


def test_exhausted_quota_is_not_retried(server: FakeLLMServer) -> None:
    server.script(rate_limited(error_code="insufficient_quota", error_type="insufficient_quota"))
    model, rec = make(server)
    with pytest.raises(ModelError, match="429") as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent and rec.waits == []


def test_server_saying_do_not_retry_is_obeyed(server: FakeLLMServer) -> None:
    server.script(error(500, "broken for good", headers={"x-should-retry": "false"}))
    model, rec = make(server)
    with pytest.raises(ModelError):
        model.generate(MESSAGES, CONTEXT)
    assert rec.waits == []


def test_malformed_json_is_retried(server: FakeLLMServer) -> None:
    server.script(malformed(), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("malformed response")


def test_connection_dropped_mid_response_is_retried(server: FakeLLMServer) -> None:
    server.script(dropped(), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("connection failed")


def test_timeout_is_retried(server: FakeLLMServer) -> None:
    server.script(answer("too late", delay_s=1.0), answer("done"))
    model, rec = make(server, timeout_s=0.2)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("request timed out")


def test_gives_up_after_max_retries_with_a_transient_error(server: FakeLLMServer) -> None:
    server.script(server_error(), server_error(), server_error(), answer("never reached"))
    model, rec = make(server, max_retries=2)
    with pytest.raises(ModelError, match="gave up after 2 retries") as info:
        model.generate(MESSAGES, CONTEXT)
    assert not info.value.permanent
    assert len(server.requests) == 3 and len(rec.waits) == 2
    assert rec.waits[0] <= 0.01 and rec.waits[1] <= 0.02


def test_max_connections_bounds_requests_in_flight(server: FakeLLMServer) -> None:
    server.default = answer("slow", delay_s=0.15)
    model, _ = make(server, max_connections=2)
    results: list[str] = []

    def call() -> None:
        results.append(model.generate(MESSAGES, CONTEXT).text)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["slow"] * 6
    assert server.max_in_flight == 2


# ---- the retry policy itself ------------------------------------------------------------------------


def test_backoff_is_full_jitter_below_an_exponential_bound_and_capped() -> None:
    settings = RetrySettings(retry_base_s=1.0, retry_max_wait_s=20.0)
    rng = random.Random(0)
    for retries in range(8):
        for _ in range(50):
            wait = backoff(retries, None, settings, rng)
            assert 0 <= wait <= min(2**retries, 20.0)
    assert backoff(0, 500.0, settings, rng) == 20.0


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 12:00:42 GMT"}, now=now) == 42.0
    assert parse_retry_after({"retry-after": "Thu, 01 Jan 2026 11:00:00 GMT"}, now=now) == 0.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


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


def test_permanent_error_fails_the_node_not_the_evaluation(
    toy_home: Path, tmp_path: Path, server: FakeLLMServer, shared_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPEEDRUN_CACHE", str(shared_cache))
    server.script(bad_request("maximum context length exceeded"), answer(TOY_EDIT))
    results = tmp_path / "results"
    args = ["--model", "openai/test-model", "--base-url", server.openai_base_url, "--nodes", "2"]
    res = CliRunner().invoke(app, eval_args(results, *args))
    assert res.exit_code == 0, res.output
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    info = read_run(run_dir)
    assert info is not None and info.status == "finished" and info.score is not None
    assert (info.score.nodes, info.score.valid_nodes) == (2, 1)
    failed = (run_dir / "nodes" / "0" / "result.json").read_text()
    assert '"status": "failed"' in failed and "maximum context length exceeded" in failed
    assert "maximum context length exceeded" in (run_dir / "nodes" / "0" / "transcript.md").read_text()


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
