"""The coder's ask-apply-retry loop against a real SDK and a server with a small window: the
failure a real model met (an answer that echoed the prompt to its cap, twice, then a fix request
that overflowed the window and ended the node as a 400) cannot happen again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.coder.answer_log import count_answer_formats, read_answers
from harness.coder.coder import write_candidate
from harness.coder.transcript import read_exchanges
from harness.models import Message
from harness.models.providers.openai import OpenAIModel
from tests.fake_llm_server import FakeLLMServer, answer

SCRIPT = "".join(f"value_{i} = {i}  # one line of a long training script\n" for i in range(700))
EDIT = "Raise one value.\n\ntrain.py\n<<<<<<< SEARCH\nvalue_7 = 7  # one line of a long training script\n"
EDIT += "=======\nvalue_7 = 8  # one line of a long training script\n>>>>>>> REPLACE\n"
ECHO = ("# Task mini-1\nYou are given a training script. " * 40 + SCRIPT[:2000]) * 6


pytestmark = pytest.mark.usefixtures("model_env")


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        # Like llama-cpp-python with --n_ctx 12288: it enforces its window, reports it nowhere but
        # in errors, and has a tokenizer endpoint.
        fake.context_window, fake.report_window, fake.chars_per_token = 12_288, False, 4.0
        yield fake


def test_fix_requests_stay_small_and_inside_the_window(server: FakeLLMServer, tmp_path: Path) -> None:
    server.script(
        answer(ECHO, finish_reason="length"),
        answer("I cannot see what to change; the script looks fine to me."),
        answer(EDIT),
    )
    model = OpenAIModel("openai/qwen2.5-coder-1.5b", {"base_url": server.openai_base_url})
    model.sleep = lambda _: None
    ask = [Message(role="system", content="Edit with SEARCH/REPLACE blocks."), Message(role="user", content=SCRIPT)]
    node_dir = tmp_path / "nodes" / "0"
    result = write_candidate(
        model, ask, {"train.py": SCRIPT}, "train.py", task_id="mini-1", node_id=0, node_dir=node_dir
    )

    assert result.error is None and result.files is not None
    assert "value_7 = 8" in result.files["train.py"]
    sent = [r.body for r in server.requests if r.path.endswith("/chat/completions")]
    # The first request named the window in its error; every later one fitted it.
    assert len(sent) == 4
    sizes = [sum(len(m["content"]) for m in body["messages"]) for body in sent]
    asked = sum(len(m.content) for m in ask)
    assert sizes[0] == sizes[1] == asked
    for size, body in zip(sizes[2:], sent[2:], strict=True):
        assert asked < size < asked + 2_500  # the original request, the failed answer's start, the reason
        assert ECHO not in body["messages"][-2]["content"]
        assert body["max_tokens"] >= 1024
    assert "cut off at its length limit" in sent[2]["messages"][-1]["content"]
    assert "cut off" not in sent[3]["messages"][-1]["content"]

    # Each answer is in the transcript and counted by its format.
    assert [r.format for r in read_answers(node_dir)] == ["prose", "prose", "search_replace"]
    counts = count_answer_formats(tmp_path)
    assert (counts.answers, counts.applied, counts.refused) == (3, {"search_replace": 1}, {"prose": 2})
    assert len([ex for ex in read_exchanges(node_dir) if ex.completion is not None]) == 3
