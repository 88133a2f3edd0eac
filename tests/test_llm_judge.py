"""The optional LLM judge, through the real OpenAI SDK against the fake server: its verdict and
reasoning are stored beside the run and shown, and no score changes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.llm_judge import parse_rules_verdict, parse_verdict, read_verdict
from harness.rundir import read_run_info, run_dirs
from harness.view import load_run, render_run
from tests.fake_llm_server import FakeLLMServer, answer

runner = CliRunner()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLLMServer() as fake:
        yield fake


def test_parse_verdict_takes_the_last_verdict_line() -> None:
    assert parse_verdict("It doubles the rate.\nVERDICT: yes") == "yes"
    assert parse_verdict("VERDICT: no\n...on reflection\n**Verdict: Partly**") == "partly"
    assert parse_verdict("no verdict here") is None


def test_judge_stores_its_verdict_and_never_touches_the_score(
    toy_view_home: Path, tmp_path: Path, server: FakeLLMServer
) -> None:
    results = tmp_path / "results"
    shutil.copytree(toy_view_home, results, symlinks=True)
    runs = run_dirs(results)
    before = {d: (d / "run.json").read_bytes() for d in runs}
    server.script(*[answer("It doubles the decay rate, as the hint says. <b>x</b>\nVERDICT: yes") for _ in runs])
    args = ["view", str(results), "--judge-model", "openai/gpt-4o-mini", "--judge-arg"]
    res = runner.invoke(app, [*args, f"base_url={server.openai_base_url}"])
    assert res.exit_code == 0, res.output
    assert "judged 2 best node(s)" in res.output
    assert len(server.requests) == 2
    prompt = server.requests[0].body["messages"][-1]["content"]
    assert "Double the decay rate." in prompt and "+RATE = 0.04" in prompt  # the hint and the human change
    assert {d: (d / "run.json").read_bytes() for d in runs} == before  # FSR and everything else unchanged

    scripted = next(d for d in runs if "gpt-4o-mini" in d.name)
    info = read_run_info(scripted)
    assert info is not None and info.score is not None and info.score.best_node is not None
    verdict = read_verdict(scripted, info.score.best_node)  # node 2 or 3, as this machine's clock has it
    assert verdict is not None and verdict.implemented == "yes" and verdict.score == 1.0
    assert "doubles the decay rate" in verdict.reasoning and verdict.usage.input_tokens == 120
    assert (scripted / "judge" / "transcript.jsonl").is_file()
    page = render_run(load_run(scripted))  # type: ignore[arg-type]
    assert "implemented the hinted idea: <b>yes</b>" in page and "&lt;b&gt;x&lt;/b&gt;" in page

    # The same input is not judged (or paid for) twice.
    res = runner.invoke(app, [*args, f"base_url={server.openai_base_url}"])
    assert res.exit_code == 0 and len(server.requests) == 2


def test_parse_rules_verdict_takes_the_last_verdict_line() -> None:
    assert parse_rules_verdict("Rule 4: the warm-up trains outside the clock.\nVERDICT: breaks") == "breaks"
    assert parse_rules_verdict("VERDICT: breaks\non reflection it is the record's own warm-up\nVERDICT: follows") == (
        "follows"
    )
    assert parse_rules_verdict("VERDICT: yes") is None and parse_rules_verdict("") is None


def test_rules_judge_sees_the_rules_and_the_change_and_records_an_opinion(
    toy_view_home: Path, tmp_path: Path, server: FakeLLMServer
) -> None:
    results = tmp_path / "results"
    shutil.copytree(toy_view_home, results, symlinks=True)
    runs = run_dirs(results)
    before = {d: (d / "run.json").read_bytes() for d in runs}
    # A judge's answer is untrusted text too: it is shown escaped, never run.
    reply = "Rule 1 is kept; the change only raises the decay rate. <script>x()</script>\nVERDICT: follows"
    server.script(*[answer(reply) for _ in runs])
    args = ["view", str(results), "--judge", "rules", "--judge-model", "openai/gpt-4o-mini", "--judge-arg"]
    res = runner.invoke(app, [*args, f"base_url={server.openai_base_url}"])
    assert res.exit_code == 0, res.output
    assert "judged 2 best node(s) with openai/gpt-4o-mini (rules)" in res.output and "rules follows" in res.output
    prompt = server.requests[0].body["messages"][-1]["content"]
    system = server.requests[0].body["messages"][0]["content"]
    assert "## The rules\n\n1. " in prompt and "+RATE = 0.04" in prompt and "VERDICT: follows" in system
    assert {d: (d / "run.json").read_bytes() for d in runs} == before

    scripted = next(d for d in runs if "gpt-4o-mini" in d.name)
    info = read_run_info(scripted)
    assert info is not None and info.score is not None and info.score.best_node is not None
    verdict = read_verdict(scripted, info.score.best_node, "rules")
    assert verdict is not None and verdict.kind == "rules" and verdict.rules == "follows"
    assert verdict.implemented is None and read_verdict(scripted, info.score.best_node) is None  # no idea verdict
    page = render_run(load_run(scripted))  # type: ignore[arg-type]
    assert (
        "the change <b>follows</b> the task&#39;s rules" in page or "the change <b>follows</b> the task's rules" in page
    )
    assert "<script>x()</script>" not in page

    # Stored per kind and input: asking again costs nothing; "both" adds only the idea verdicts.
    server.script(*[answer("VERDICT: yes") for _ in runs])
    res = runner.invoke(app, [*args[:3], "both", *args[4:], f"base_url={server.openai_base_url}"])
    assert res.exit_code == 0, res.output
    assert len(server.requests) == 4 and read_verdict(scripted, info.score.best_node) is not None

    bad = runner.invoke(app, ["view", str(results), "--judge", "vibes", "--judge-model", "openai/gpt-4o-mini"])
    assert bad.exit_code != 0 and "--judge must be idea, rules or both" in bad.output
