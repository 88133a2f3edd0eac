"""What every provider must do, checked for each: one suite instead of a copy per provider.

The API providers run their real SDK against the fake server speaking their vendor's wire
format; the offline providers are held to the contract they share with them. A new provider
joins by adding a row to `API` (or `OFFLINE`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.coder.transcript import Exchange, append_exchange
from harness.errors import ConfigError
from harness.models import CallContext, Completion, Message, Model, ModelError, Usage, get_model, provider_names
from harness.models.base import APIModel
from harness.models.context import default_answer_cap
from harness.models.registry import is_deterministic, provider_class
from tests.fake_llm_server import (
    FakeLLMServer,
    Recorder,
    Reply,
    answer,
    bad_request,
    dropped,
    empty_choice,
    error,
    malformed,
    plain_json,
    rate_limited,
    server_error,
    truncated_stream,
)

CONTEXT = CallContext(task_id="toy-0", file_name="train.py", current_code="RATE = 0.02\n", node_id=3)
MESSAGES = [
    Message(role="system", content="You edit training scripts."),
    Message(role="user", content="Make it faster."),
]


@dataclass(frozen=True)
class Api:
    """How to point one API provider at the fake server."""

    provider: str
    spec: str
    key_variable: str
    base_url: Callable[[FakeLLMServer], str]
    #: A setting only this provider has, with a bad value, and words its error must contain.
    bad_value: tuple[dict[str, Any], str] = field(default_factory=lambda: ({}, ""))

    def __str__(self) -> str:
        return self.provider


API = [
    Api(
        "openai",
        "openai/gpt-4o",
        "OPENAI_API_KEY",
        lambda s: s.openai_base_url,
        ({"temperature": "hot"}, "temperature"),
    ),
    Api(
        "anthropic",
        "anthropic/claude-sonnet-4-6",
        "ANTHROPIC_API_KEY",
        lambda s: s.anthropic_base_url,
        ({"effort": "extreme"}, "effort"),
    ),
]
OFFLINE = ["oracle", "null", "replay"]


pytestmark = pytest.mark.usefixtures("model_env")


@pytest.fixture(params=API, ids=str)
def api(request: pytest.FixtureRequest) -> Api:
    param: Api = request.param
    return param


def make(api: Api, server: FakeLLMServer, **args: Any) -> tuple[APIModel, Recorder]:
    model = get_model(api.spec, {"base_url": api.base_url(server), "retry_base_s": 0.01, **args})
    assert isinstance(model, APIModel)
    rec = Recorder()
    model.sleep = rec.waits.append
    model.on_event = rec.events.append
    return model, rec


# ---- every provider ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [a.provider for a in API] + OFFLINE)
def test_every_provider_is_registered_by_entry_point(name: str) -> None:
    assert name in provider_names()
    cls = provider_class(name)
    assert issubclass(cls, Model) and cls.provider == name


def test_an_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown model provider 'mistral'") as info:
        get_model("mistral/large")
    for name in provider_names():
        assert name in str(info.value)
    assert "openai/<model>" in str(info.value) and "oracle," in str(info.value)


def offline_model(name: str, tmp_path: Path) -> Model:
    if name != "replay":
        return get_model(name)
    run = tmp_path / "recorded"
    append_exchange(
        run / "nodes" / "3",
        Exchange(
            task_id="toy-0",
            node=3,
            model="openai/gpt-4o",
            messages=MESSAGES,
            completion=Completion(
                text="train.py\n<<<<<<< SEARCH\nRATE = 0.02\n=======\nRATE = 0.04\n>>>>>>> REPLACE\n"
            ),
        ),
    )
    return get_model("replay", {"replay_from": str(run)})


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_providers_keep_the_contract(name: str, tmp_path: Path, toy_home: Path) -> None:
    model = offline_model(name, tmp_path)
    model.check_ready()
    completion = model.generate(MESSAGES, CONTEXT)
    assert isinstance(completion, Completion) and completion.text
    assert completion.usage.calls == 1 and completion.usage.cost_usd == 0
    assert model.priced and model.spec == name
    assert is_deterministic(name) == (name in ("oracle", "null"))
    model.cancel()  # nothing in flight: a no-op


# ---- the API providers: settings, names, keys --------------------------------------------------------


def test_answer_with_usage_latency_and_the_request_sent(api: Api, server: FakeLLMServer) -> None:
    server.script(answer("Here is my plan.", input_tokens=1000, cached_tokens=400, output_tokens=200))
    model, rec = make(api, server, prices=None)
    completion = model.generate(MESSAGES, CONTEXT)
    assert completion.text == "Here is my plan."
    assert completion.model == api.spec
    u = completion.usage
    assert (u.calls, u.input_tokens, u.output_tokens, u.cached_tokens) == (1, 1000, 200, 400)
    assert u.cost_usd > 0 and u.unpriced_calls == 0 and u.latency_s > 0
    assert rec.waits == [] and rec.statuses == []
    (request,) = server.requests
    assert request.body["model"] == api.spec.split("/", 1)[1]


@pytest.mark.parametrize("kind", ["unknown", "bad value", "provider's own"])
def test_bad_settings_fail_before_any_call_with_one_error_text(api: Api, kind: str) -> None:
    args, words = {
        "unknown": ({"temprature": 0.5}, f"{api.spec} has no setting 'temprature' (--model-arg temprature=...)"),
        "bad value": ({"max_retries": "many"}, f"{api.spec}: bad --model-arg max_retries='many'"),
        "provider's own": api.bad_value,
    }[kind]
    with pytest.raises(ConfigError) as info:
        get_model(api.spec, args)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_name_without_a_model_is_refused(api: Api) -> None:
    with pytest.raises(ConfigError, match=rf"name the model as {api.provider}/<model>"):
        get_model(api.provider)


def test_missing_key_for_the_vendor_fails_early_naming_the_variable(api: Api) -> None:
    with pytest.raises(ConfigError, match=api.key_variable) as info:
        get_model(api.spec).check_ready()
    assert "\n" not in str(info.value)


def test_another_server_needs_no_key(api: Api, server: FakeLLMServer) -> None:
    model, _ = make(api, server)
    assert not model.uses_vendor
    model.check_ready()
    assert model.generate(MESSAGES, CONTEXT).text == "OK"


def test_key_and_endpoint_come_from_dotenv_without_overriding_the_environment(
    api: Api, server: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_var = f"{api.provider.upper()}_BASE_URL"
    (tmp_path / ".env").write_text(f"{api.key_variable}=sk-from-dotenv\n{base_var}=http://127.0.0.1:9/v1\n")
    monkeypatch.setenv(base_var, api.base_url(server))
    model = get_model(api.spec, {"retry_base_s": 0.01})
    model.check_ready()
    model.generate(MESSAGES, CONTEXT)
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-dotenv"
    assert isinstance(model, APIModel) and model.base_url == api.base_url(server)


def test_settings_are_recorded(api: Api, server: FakeLLMServer) -> None:
    model, _ = make(api, server, max_retries="2")
    settings = model.settings()
    assert settings["model"] == api.spec.split("/", 1)[1]
    assert settings["base_url"] == api.base_url(server) and settings["max_retries"] == 2


# ---- the API providers: failures and retries ----------------------------------------------------------


def test_rate_limit_honours_retry_after_then_succeeds(api: Api, server: FakeLLMServer) -> None:
    server.script(rate_limited(retry_after="3"), answer("done"))
    model, rec = make(api, server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert len(server.requests) == 2
    assert 3.0 <= rec.waits[0] <= 3.0 + 0.01
    assert rec.statuses == ["rate limited (429): Rate limit reached, retrying in 3.0 s (1/6)"]
    assert all(e.node == CONTEXT.node_id for e in rec.events)


def test_retry_after_ms_is_preferred(api: Api, server: FakeLLMServer) -> None:
    server.script(rate_limited(retry_after="30", retry_after_ms="1500"), answer("done"))
    model, rec = make(api, server)
    model.generate(MESSAGES, CONTEXT)
    assert 1.5 <= rec.waits[0] <= 1.51


def test_server_errors_are_retried(api: Api, server: FakeLLMServer) -> None:
    server.script(server_error(500), server_error(503), answer("done"))
    model, rec = make(api, server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert len(rec.waits) == 2
    assert rec.statuses[0].startswith("server error (500)")
    assert rec.statuses[1].startswith("service unavailable (503)")


def test_gives_up_after_max_retries(api: Api, server: FakeLLMServer) -> None:
    server.script(server_error(), server_error(), server_error(), answer("never reached"))
    model, rec = make(api, server, max_retries=2)
    with pytest.raises(ModelError, match=r"server error \(500\).*gave up after 2 retries") as info:
        model.generate(MESSAGES, CONTEXT)
    assert not info.value.permanent
    assert len(server.requests) == 3 and len(rec.waits) == 2
    # Full jitter below an exponential bound: [0, base), then [0, 2 * base).
    assert rec.waits[0] <= 0.01 and rec.waits[1] <= 0.02


def test_a_bad_request_is_permanent(api: Api, server: FakeLLMServer) -> None:
    server.script(bad_request("messages: roles must alternate"))
    model, rec = make(api, server)
    with pytest.raises(ModelError, match=r"bad request \(400\): messages: roles must alternate") as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent and rec.waits == [] and len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403, 404, 413, 422])
def test_other_client_errors_are_permanent(api: Api, server: FakeLLMServer, status: int) -> None:
    server.script(error(status, "nope"))
    model, rec = make(api, server)
    with pytest.raises(ModelError) as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent and rec.waits == []


@pytest.mark.parametrize(
    "reply",
    [
        rate_limited(error_code="insufficient_quota", error_type="insufficient_quota"),
        error(500, "broken for good", headers={"x-should-retry": "false"}),
    ],
    ids=["exhausted quota", "server says do not retry"],
)
def test_what_waiting_cannot_fix_is_not_retried(api: Api, server: FakeLLMServer, reply: Reply) -> None:
    server.script(reply)
    model, rec = make(api, server)
    with pytest.raises(ModelError) as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent and rec.waits == []


@pytest.mark.parametrize(
    ("reply", "status"),
    [(malformed(), "malformed response"), (dropped(), "connection")],
    ids=["malformed", "dropped"],
)
def test_broken_responses_are_retried(api: Api, server: FakeLLMServer, reply: Reply, status: str) -> None:
    server.script(reply, answer("done"))
    model, rec = make(api, server)
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert status in rec.statuses[0]


# ---- the API providers: long calls ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not streamed"])
def test_a_server_that_goes_silent_is_noticed_then_asked_again(api: Api, server: FakeLLMServer, stream: bool) -> None:
    server.script(answer("too late", delay_s=2.0))
    server.default = answer("done")  # (on a loaded machine even this may be late once: then it is asked again)
    model, rec = make(api, server, stall_s=0.8, stream=stream)
    model.progress_every_s, model.stall_notice_s = 0.1, 0.2
    assert model.generate(MESSAGES, CONTEXT).text == "done"
    assert rec.statuses[0].startswith("stream stalled: nothing for 1 s")
    silent = [e for e in rec.events if e.kind == "model_progress" and e.data["silent_s"] is not None]
    assert silent and silent[0].message.startswith("waiting for the first token for")
    assert silent[0].node == CONTEXT.node_id


def test_a_streamed_answer_reports_its_progress(api: Api, server: FakeLLMServer) -> None:
    text = "def train():\n    pass\n" * 40
    server.script(answer(text, chunk_delay_s=0.01, chunk_chars=8))
    model, rec = make(api, server)
    model.progress_every_s = 0.05
    assert model.generate(MESSAGES, CONTEXT).text == text
    progress = [e for e in rec.events if e.kind == "model_progress"]
    assert len(progress) >= 2
    tokens = [e.data["tokens"] for e in progress]
    assert tokens == sorted(tokens) and tokens[-1] > 0
    assert progress[-1].message.startswith("answering: ~") and progress[-1].data["purpose"] == "code"
    assert server.requests[0].body["stream"] is True


def test_a_call_past_its_time_limit_ends_and_is_not_asked_again(api: Api, server: FakeLLMServer) -> None:
    server.script(answer("x = 1\n" * 200, chunk_delay_s=0.02, chunk_chars=4))
    model, _ = make(api, server, timeout_s=0.3)
    with pytest.raises(ModelError, match=r"within the call time limit of 0 s \(answering") as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent and len(server.requests) == 1


def test_cancel_ends_a_call_in_flight_at_once(api: Api, server: FakeLLMServer) -> None:
    server.script(answer("never seen", delay_s=30))
    model, _ = make(api, server)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            model.generate(MESSAGES, CONTEXT)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    while not server.requests:
        worker.join(0.01)
    model.cancel()
    worker.join(10)  # far less than the server's 30 s: the call did not wait for the server
    assert not worker.is_alive()
    (exc,) = outcome
    assert isinstance(exc, ModelError) and "cancelled" in str(exc)


# ---- the API providers: whatever the wire carries, a call ends as an answer or a ModelError -------------


@pytest.mark.parametrize("stream", [True, False], ids=["streamed", "not streamed"])
@pytest.mark.parametrize(
    "broken",
    [plain_json, dropped, truncated_stream, malformed, empty_choice],
    ids=["plain JSON", "cut stream", "stream ends early", "invalid JSON", "empty choice"],
)
def test_a_broken_wire_format_is_a_model_error(
    api: Api, server: FakeLLMServer, broken: Callable[[], Reply], stream: bool
) -> None:
    server.default = broken()
    model, _ = make(api, server, max_retries=1, stream=stream)
    try:
        completion = model.generate(MESSAGES, CONTEXT)
    except ModelError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    # A gateway's plain JSON to a stream is a whole answer when nothing was asked to stream.
    assert broken is plain_json and not stream and completion.text


def test_plain_json_to_a_streamed_request_says_how_to_go_on(api: Api, server: FakeLLMServer) -> None:
    server.script(plain_json())
    model, _ = make(api, server)
    with pytest.raises(ModelError, match=r"plain JSON body.*stream=false") as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent and len(server.requests) == 1
    server.script(plain_json("answered in one piece"))
    model, _ = make(api, server, stream=False)
    assert model.generate(MESSAGES, CONTEXT).text == "answered in one piece"


def test_an_exception_inside_the_sdk_is_a_model_error(api: Api, server: FakeLLMServer) -> None:
    model, _ = make(api, server)

    def broken_sdk(*args: Any) -> Iterator[str]:
        raise AssertionError("the SDK's own invariant")
        yield ""

    model.request = broken_sdk  # type: ignore[method-assign]
    with pytest.raises(ModelError, match="unexpected AssertionError from the SDK: the SDK's own invariant") as info:
        model.generate(MESSAGES, CONTEXT)
    assert info.value.permanent


def test_the_default_answer_cap_fits_the_script_and_a_plan(api: Api, server: FakeLLMServer) -> None:
    script = "x = 1  # a line of the training script\n" * 400
    model, _ = make(api, server)
    model.generate(MESSAGES, CONTEXT.model_copy(update={"current_code": script}))
    model.generate(MESSAGES, CONTEXT)
    big, small = (r.body["max_tokens"] for r in server.requests)
    assert big == default_answer_cap(script) and big * 3.5 > len(script) * 1.25
    assert small == 4096
    model, _ = make(api, server, max_tokens="1500")
    model.generate(MESSAGES, CONTEXT)
    assert server.requests[-1].body["max_tokens"] == 1500


def test_max_connections_bounds_requests_in_flight(api: Api, server: FakeLLMServer) -> None:
    server.default = answer("slow", delay_s=0.15)
    # Its own endpoint path, so the process-wide limit of other tests does not apply.
    model, _ = make(api, server, max_connections=2)
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


def test_unpriced_model_costs_nothing_and_is_flagged(api: Api, server: FakeLLMServer) -> None:
    model = get_model(f"{api.provider}/my-local-model", {"base_url": api.base_url(server)})
    assert not model.priced
    usage = model.generate(MESSAGES, CONTEXT).usage
    assert usage.cost_usd == 0.0 and usage.unpriced_calls == 1 and usage.input_tokens == 120


def test_usage_adds_up() -> None:
    total = Usage(calls=1, input_tokens=3) + Usage(calls=2, output_tokens=4, cost_usd=0.5)
    assert (total.calls, total.total_tokens, total.cost_usd) == (3, 7, 0.5)
