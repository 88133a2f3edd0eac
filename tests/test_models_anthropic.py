"""`anthropic/<model>` through the real SDK (streaming Messages API), against the fake server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.coder.transcript import read_exchanges
from harness.errors import ConfigError
from harness.eval.log import read_run
from harness.models import CodingContext, Message, ModelError, get_model
from harness.models import base as models_base
from harness.models.anthropic import AnthropicModel
from tests.fake_llm_server import (
    FakeLLMServer,
    answer,
    bad_request,
    dropped,
    malformed,
    overloaded,
    overloaded_mid_stream,
    rate_limited,
    server_error,
    truncated_stream,
)

CONTEXT = CodingContext(task_id="mini-0", file_name="train.py", current_code="x = 1\n", node_id=5, attempt=1)
MESSAGES = [
    Message(role="system", content="You edit training scripts."),
    Message(role="user", content="Make it faster."),
    Message(role="assistant", content="train.py\n<<<<<<< SEARCH\ny\n=======\nz\n>>>>>>> REPLACE"),
    Message(role="user", content="That SEARCH part matched nothing. Try again."),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "SPEEDRUN_PRICES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models_base, "_dotenv_loaded", False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.statuses: list[str] = []


def make(
    server: FakeLLMServer, spec: str = "anthropic/claude-sonnet-4-6", **args: Any
) -> tuple[AnthropicModel, Recorder]:
    model = AnthropicModel(spec, {"base_url": server.anthropic_base_url, "retry_base_s": 0.01, **args})
    rec = Recorder()
    model.sleep = rec.waits.append
    model.on_status = rec.statuses.append
    return model, rec


def test_streamed_answer_with_usage_and_cost(server: FakeLLMServer) -> None:
    text = "I will fuse the optimizer steps. " * 5
    server.script(answer(text, input_tokens=2000, cached_tokens=500, output_tokens=300))
    model, rec = make(server)
    completion = model.generate(MESSAGES, CONTEXT)

    assert completion.text == text
    assert completion.finish_reason == "end_turn"
    assert completion.model == "anthropic/claude-sonnet-4-6"
    u = completion.usage
    # Anthropic reports cache reads apart from input tokens; ours include them.
    assert (u.calls, u.input_tokens, u.cached_tokens, u.output_tokens) == (1, 2000, 500, 300)
    assert u.cost_usd == pytest.approx((1500 * 3.00 + 500 * 0.30 + 300 * 15.00) / 1e6)
    assert u.latency_s > 0 and rec.waits == []

    (request,) = server.requests
    assert request.path == "/v1/messages"
    assert request.headers["authorization"] == "Bearer sk-ant-test"
    body = request.body
    assert body["stream"] is True
    assert body["model"] == "claude-sonnet-4-6"
    assert body["max_tokens"] == 8192
    assert body["system"] == "You edit training scripts."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert "thinking" not in body and "temperature" not in body


def test_extended_thinking(server: FakeLLMServer) -> None:
    server.script(answer("final answer", thinking="let me think", output_tokens=900, reasoning_tokens=600))
    model, _ = make(server, thinking_budget="4096")
    completion = model.generate(MESSAGES, CONTEXT)

    body = server.requests[0].body
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert body["max_tokens"] == 4096 + 8192
    # Thinking is not part of the answer the coder parses.
    assert completion.text == "final answer"
    assert completion.usage.reasoning_tokens == 600
    assert model.settings()["thinking_budget"] == 4096


def test_effort_is_sent_in_output_config(server: FakeLLMServer) -> None:
    model, _ = make(server, effort="high", max_tokens=1000)
    model.generate(MESSAGES, CONTEXT)
    body = server.requests[0].body
    assert body["output_config"] == {"effort": "high"} and body["max_tokens"] == 1000


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ({"thinking_budget": 8000, "max_tokens": 4000}, "must exceed thinking_budget"),
        ({"thinking_budget": 100}, "thinking_budget"),
        ({"temperature": 0.3}, "no setting 'temperature'"),
        ({"effort": "extreme"}, "effort"),
    ],
)
def test_bad_settings_fail_before_any_call(args: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        AnthropicModel("anthropic/claude-sonnet-4-6", args)


def test_missing_key_fails_early_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        get_model("anthropic/claude-sonnet-4-6").check_ready()
    # Another Messages-API server may do without one.
    AnthropicModel("anthropic/local", {"base_url": "http://127.0.0.1:1"}).check_ready()


def test_base_url_and_key_from_dotenv(server: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    (tmp_path / ".env").write_text(f"ANTHROPIC_API_KEY=sk-ant-dotenv\nANTHROPIC_BASE_URL={server.anthropic_base_url}\n")
    model = AnthropicModel("anthropic/claude-haiku-4-5", {"retry_base_s": 0.01})
    model.check_ready()
    model.generate(MESSAGES, CONTEXT)
    assert server.requests[0].headers["authorization"] == "Bearer sk-ant-dotenv"


def test_overloaded_529_then_success(server: FakeLLMServer) -> None:
    server.script(overloaded(), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("overloaded (529): Overloaded, retrying in")


def test_overloaded_inside_a_stream_then_success(server: FakeLLMServer) -> None:
    server.script(overloaded_mid_stream(), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("overloaded (mid-stream)")


def test_rate_limit_honours_retry_after(server: FakeLLMServer) -> None:
    server.script(rate_limited(retry_after="2"), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert 2.0 <= rec.waits[0] <= 2.01
    assert rec.statuses[0].startswith("rate limited (429)")


def test_server_error_then_success(server: FakeLLMServer) -> None:
    server.script(server_error(500), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert len(server.requests) == 2 and len(rec.waits) == 1


def test_prompt_too_long_is_permanent(server: FakeLLMServer) -> None:
    server.script(bad_request("prompt is too long: 250000 tokens > 200000 maximum"))
    model, rec = make(server)
    with pytest.raises(ModelError, match="prompt is too long") as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent and rec.waits == [] and len(server.requests) == 1


def test_malformed_event_is_retried(server: FakeLLMServer) -> None:
    server.script(malformed(), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("malformed response")


def test_connection_dropped_mid_stream_is_retried(server: FakeLLMServer) -> None:
    server.script(dropped(), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("connection dropped mid-response")


def test_stream_that_ends_early_is_retried(server: FakeLLMServer) -> None:
    server.script(truncated_stream(), answer("done"))
    model, rec = make(server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("incomplete response")


def test_gives_up_after_max_retries(server: FakeLLMServer) -> None:
    server.script(overloaded(), overloaded())
    model, _ = make(server, max_retries=1)
    with pytest.raises(ModelError, match="gave up after 1 retries") as info:
        model.generate(MESSAGES, CONTEXT)
    assert not info.value.permanent and len(server.requests) == 2


def test_cli_eval_runs_and_scores_a_node_through_anthropic(
    toy_home: Path, tmp_path: Path, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    edit = "Double the decay rate.\n\ntrain.py\n<<<<<<< SEARCH\nRATE = 0.02\n=======\nRATE = 0.04\n>>>>>>> REPLACE\n"
    server.script(overloaded(), answer(edit, input_tokens=3000, cached_tokens=1000, output_tokens=80))
    results = tmp_path / "results"
    res = CliRunner().invoke(
        app,
        [
            "eval",
            "--track",
            "toy",
            "--task",
            "toy-0",
            "--model",
            "anthropic/claude-haiku-4-5",
            "--model-arg",
            "retry_base_s=0.01",
            "--nodes",
            "1",
            "--results-dir",
            str(results),
            "--calibration-runs",
            "1",
            "--confirm-runs",
            "0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "overloaded (529)" in res.output

    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    info = read_run(run_dir)
    assert info is not None and info.status == "finished" and info.score is not None
    assert info.score.valid_nodes == 1 and info.score.fsr > 0.5
    assert "RATE = 0.04" in (run_dir / "nodes" / "0" / "workspace" / "train.py").read_text()
    # claude-haiku-4-5: $1 input, $0.10 cache hits, $5 output per million.
    assert info.usage.cost_usd == pytest.approx((2000 * 1.0 + 1000 * 0.10 + 80 * 5.0) / 1e6)
    assert (info.usage.input_tokens, info.usage.cached_tokens, info.usage.output_tokens) == (3000, 1000, 80)
    (exchange,) = read_exchanges(run_dir / "nodes" / "0")
    assert exchange.settings["max_tokens"] == 8192
    assert all(r.body["model"] == "claude-haiku-4-5" for r in server.requests)
