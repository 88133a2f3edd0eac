"""Context windows, prompt sizes and answer caps; and per-minute pacing. Both providers, real SDKs."""

from __future__ import annotations

from typing import Any

import pytest

from harness.models import CallContext, Message, ModelError, get_model
from harness.models.base import APIModel
from harness.models.context import (
    PromptSize,
    Window,
    default_answer_cap,
    estimate_prompt,
    plan_answer,
    vendor_window,
    window_from_card,
    window_from_error,
)
from harness.models.limits import Pacer
from tests.fake_llm_server import FakeLLMServer, Recorder

CONTEXT = CallContext(task_id="toy-0", file_name="train.py", current_code="RATE = 0.02\n", node_id=1)
SPECS = {"openai": "openai/local-coder", "anthropic": "anthropic/local-claude"}


def ask(chars: int) -> list[Message]:
    return [Message(role="system", content="Edit the script."), Message(role="user", content="x" * chars)]


pytestmark = pytest.mark.usefixtures("model_env")


@pytest.fixture(params=list(SPECS))
def provider(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def make(provider: str, server: FakeLLMServer, **args: Any) -> tuple[APIModel, Recorder]:
    url = server.openai_base_url if provider == "openai" else server.anthropic_base_url
    model = get_model(SPECS[provider], {"base_url": url, "retry_base_s": 0.01, **args})
    assert isinstance(model, APIModel)
    rec = Recorder()
    model.sleep, model.on_event = rec.waits.append, rec.events.append
    return model, rec


def completions(server: FakeLLMServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests if r.path.endswith(("/chat/completions", "/messages"))]


# ---- the pieces ---------------------------------------------------------------------------------------


def test_windows_from_the_vendor_table_cards_and_errors() -> None:
    assert vendor_window("gpt-4o-2024-08-06") == 128_000
    assert vendor_window("gpt-5-chat-latest") == 128_000 and vendor_window("gpt-5-mini") == 400_000
    assert vendor_window("claude-3-7-sonnet-20250219") == 200_000
    assert vendor_window("deepseek/deepseek-r1") == vendor_window("deepseek-reasoner")
    assert vendor_window("qwen2.5-coder-1.5b-instruct") is None
    assert window_from_card({"id": "m", "max_model_len": 32768}) == 32768
    assert window_from_card({"id": "m", "meta": {"n_ctx_train": 131072}}) == 131072
    assert window_from_card({"id": "m", "owned_by": "me"}) is None
    assert window_from_error("bad request (400): Requested tokens (12355) exceed context window of 12288") == 12288
    assert window_from_error("This model's maximum context length is 128,000 tokens. However") == 128_000
    assert window_from_error("prompt is too long: 250000 tokens > 200000 maximum") == 200_000
    assert window_from_error("rate limited") is None


def test_a_plan_fits_the_window_or_says_why_not() -> None:
    window = Window(12_288, "--context-window")
    assert plan_answer("m", PromptSize(4_000, exact=True), window, 6_000) == 6_000
    assert plan_answer("m", PromptSize(8_000, exact=True), window, 6_000) == 4_288
    # An estimate keeps a tenth of itself spare.
    assert plan_answer("m", PromptSize(8_000, exact=False), window, 6_000) == 3_488
    with pytest.raises(ModelError, match=r"cannot fit.*about 12,355 tokens \(estimated at 3.5 characters") as info:
        plan_answer("openai/m", PromptSize(12_355, exact=False), window, 6_000)
    assert "12,288 tokens (--context-window)" in str(info.value) and info.value.permanent
    assert plan_answer("m", PromptSize(10**6, exact=False), None, 6_000) == 6_000


def test_the_default_cap_grows_with_the_script() -> None:
    assert default_answer_cap("") == 4096
    mini_script = "x" * 14_000  # a 360-line mini record is about this size
    assert 6_000 <= default_answer_cap(mini_script) <= 8_192
    assert default_answer_cap("x" * 40_000) > 40_000 / 3.5


# ---- through the providers ---------------------------------------------------------------------------


def test_a_prompt_beyond_the_window_fails_before_anything_is_sent(provider: str, server: FakeLLMServer) -> None:
    model, _ = make(provider, server, context_window="2000")
    with pytest.raises(ModelError, match=r"cannot fit.*context window is 2,000 tokens \(--context-window\)") as info:
        model.generate(ask(20_000), CONTEXT)
    assert info.value.permanent and completions(server) == []


def test_the_cap_is_lowered_so_that_prompt_and_answer_fit(provider: str, server: FakeLLMServer) -> None:
    model, _ = make(provider, server, context_window="8000", max_tokens="6000")
    model.generate(ask(14_000), CONTEXT)
    (body,) = completions(server)
    prompt = estimate_prompt(ask(14_000))
    assert body["max_tokens"] == 8000 - prompt - prompt // 10 < 6000


def test_the_servers_window_is_read_from_its_model_list(server: FakeLLMServer) -> None:
    server.context_window = 4096
    model, _ = make("openai", server)
    with pytest.raises(ModelError, match=r"4,096 tokens \(reported by the server's /v1/models\)"):
        model.generate(ask(20_000), CONTEXT)
    assert completions(server) == []


def test_near_the_window_the_servers_tokenizer_counts(provider: str, server: FakeLLMServer) -> None:
    # 4 characters per token by this server's tokenizer: the 3.5 estimate alone would refuse.
    server.chars_per_token = 4.0
    model, _ = make(provider, server, context_window="5000", max_tokens="1024")
    model.generate(ask(13_000), CONTEXT)
    counted = [r for r in server.requests if "tokenize" in r.path or "count_tokens" in r.path]
    assert counted and completions(server)[0]["max_tokens"] == 1024
    with pytest.raises(ModelError, match=r"counted by the server's tokenizer"):
        model.generate(ask(19_000), CONTEXT)


def test_a_window_named_by_the_servers_error_is_learned(provider: str, server: FakeLLMServer) -> None:
    server.context_window = 6000  # enforced, and (to the OpenAI provider) reported nowhere but in errors
    model, rec = make(provider, server, max_tokens="6000")
    if provider == "openai":
        model.server_window = lambda client: None  # type: ignore[method-assign]
    assert model.generate(ask(8_000), CONTEXT).text == "OK"
    first, second = completions(server)
    assert first["max_tokens"] == 6000 and second["max_tokens"] < 6000 - 2000
    assert any("context window is 6000 tokens" in s for s in rec.statuses)
    # Known from now on: the next call is planned to fit from the start.
    model.generate(ask(8_000), CONTEXT)
    assert len(completions(server)) == 3
    with pytest.raises(ModelError, match=r"cannot fit.*\(named by the server's error\)"):
        model.generate(ask(30_000), CONTEXT)


def test_a_prompt_the_server_refuses_outright_ends_with_the_clear_reason(server: FakeLLMServer) -> None:
    """The failure the issue met: a 12,355-token prompt against a 12,288-token window."""
    server.context_window = 12_288
    model, _ = make("openai", server)
    model.server_window = lambda client: None  # type: ignore[method-assign]
    with pytest.raises(ModelError, match=r"cannot fit.*12,288 tokens \(named by the server's error\)") as info:
        model.generate(ask(4 * 12_355), CONTEXT)
    assert info.value.permanent and len(completions(server)) == 1


# ---- pacing --------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_requests_per_minute_over_a_sliding_minute() -> None:
    clock = Clock()
    pacer = Pacer(2, None, clock)
    for _ in range(3):
        pacer.pace(10, clock.sleep, lambda wait: None)
    assert clock.slept == [60.0]
    clock.now += 30
    assert pacer.reserve(10)[0] == pytest.approx(0.0)


def test_tokens_per_minute_with_what_was_really_used() -> None:
    clock = Clock()
    pacer = Pacer(None, 1000, clock)
    place = pacer.pace(800, clock.sleep, lambda wait: None)
    clock.now += 10
    assert pacer.reserve(300)[0] == pytest.approx(50.0)  # 800 reserved + 300 > 1000: wait for the first to leave
    pacer.settle(place, 200)  # it used only 200
    assert pacer.reserve(300)[0] == 0.0
    assert pacer.reserve(5000)[0] > 0  # alone in its minute only
    clock.now += 61
    assert pacer.reserve(5000)[0] == 0.0


def test_a_provider_paces_its_requests(provider: str, server: FakeLLMServer) -> None:
    model, rec = make(provider, server, requests_per_minute="1")
    clock = Clock()
    model.clock, model.sleep = clock, clock.sleep
    for _ in range(2):
        model.generate(ask(10), CONTEXT)
    assert clock.slept == [pytest.approx(60.0)]
    assert rec.statuses == ["pacing: waiting 60 s for the per-minute limits"]
    assert len(completions(server)) == 2
