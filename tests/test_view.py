"""`speedrun view` on finished toy runs (tests/viewrun.py: crashing, invalid, valid and failed
nodes from a scripted model through the real OpenAI SDK, and the oracle)."""

from __future__ import annotations

import html
import json
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.leaderboard import EXTRA_COLUMNS, collect
from harness.rundir import run_dirs
from harness.search.journal import JournalEvent
from harness.view import load_run, render_run
from harness.view.server import ViewServer
from harness.view.site import page_name
from tests.viewrun import HOSTILE_ANSWER, HOSTILE_LOG

runner = CliRunner()


def _scripted(results: Path) -> Path:
    return next(d for d in run_dirs(results) if "gpt-4o-mini" in d.name)


def _oracle(results: Path) -> Path:
    return next(d for d in run_dirs(results) if "oracle" in d.name)


def test_every_node_has_its_diffs_log_curve_and_transcript(toy_view_home: Path) -> None:
    run = load_run(_scripted(toy_view_home))
    assert run is not None
    by_id = {n.id: n for n in run.nodes}
    assert [(n.id, n.action, n.parent, n.status) for n in run.nodes] == [
        (0, "draft", None, "buggy"),
        (1, "draft", None, "invalid"),
        (2, "draft", None, "valid"),
        (3, "debug", 0, "valid"),
        (4, "improve", 2, "failed"),
    ]
    for nid in (0, 1, 2, 3):
        n = by_id[nid]
        assert n.diff_parent is not None and n.diff_parent.text.startswith("--- parent/train.py")
        assert n.diff_record is not None and n.diff_record.startswith("--- 00-rate0.02/train.py")
        assert n.log is not None and n.log.text
        assert len(n.exchanges) == 1 and n.exchanges[0].completion is not None
    assert all(by_id[i].curve for i in (1, 2, 3)) and not by_id[0].curve  # node 0 crashed before validating
    crash_log = by_id[0].log
    assert crash_log is not None and "RuntimeError" in crash_log.text and HOSTILE_LOG in crash_log.text
    assert len(by_id[4].exchanges) == 3 and by_id[4].diff_parent is None  # three answers, no code
    assert set(run.references) == {"00-rate0.02", "01-rate0.04"}  # record i's and i+1's curves
    # the debug node of the crash made the whole human change; node 2 a different rate
    assert by_id[3].similarity is not None and by_id[3].similarity.lines == 1.0
    assert by_id[2].similarity is not None and by_id[2].similarity.lines == 0.5  # it removed RATE = 0.02 too
    # Only valid nodes can score (their value depends on this machine's clock, so it is not pinned here).
    assert all(by_id[i].search_fsr == 0.0 for i in (0, 1, 4)) and by_id[2].search_fsr is not None

    page = render_run(run)
    for nid in range(5):
        assert f'id="node-{nid}"' in page
    assert page.count('class="plot loss-plot"') == 3  # nodes 0 (crashed) and 4 (failed) printed no loss
    assert page.count('class="add"') > 0 and 'id="tree-plot"' in page and 'id="tree"' in page


def test_hostile_output_reaches_the_page_as_text(toy_view_home: Path) -> None:
    page = render_run(load_run(_scripted(toy_view_home)))  # type: ignore[arg-type]
    assert HOSTILE_LOG not in page and HOSTILE_ANSWER not in page and "<b>boom</b>" not in page
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page  # the log line, as text
    assert "&lt;img src=x onerror=" in page  # the model's answer, as text
    assert len(re.findall(r"<script\b", page)) == 1  # the page's own filter script, nothing else
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)
    assert csp is not None
    policy = html.unescape(csp.group(1))
    assert "default-src 'none'" in policy and re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+';", policy)


def test_cli_writes_the_index_and_a_page_per_run(toy_view_home: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["view", str(toy_view_home), "--out", str(tmp_path / "site")])
    assert res.exit_code == 0, res.output
    index = (tmp_path / "site" / "index.html").read_text()
    for run_dir in run_dirs(toy_view_home):
        assert f'href="{page_name(run_dir)}"' in index
        assert (tmp_path / "site" / page_name(run_dir)).is_file()
    res = runner.invoke(app, ["view", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such results directory" in " ".join(res.output.split())


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_server_renders_a_live_run_as_its_nodes_finish(toy_view_home: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    live = results / _scripted(toy_view_home).name
    shutil.copytree(_scripted(toy_view_home), live, symlinks=True)
    info = json.loads((live / "run.json").read_text())
    info["status"] = "running"
    (live / "run.json").write_text(json.dumps(info))
    with open(live / "journal.jsonl", "a") as f:
        f.write(JournalEvent(event="started", node_id=5, action="improve", parent=3).model_dump_json() + "\n")
    server = ViewServer(results).start()
    try:
        status, page = _get(server.url + page_name(live))
        assert status == 200
        assert 'http-equiv="refresh"' in page and 'id="node-5"' in page and 'data-status="running"' in page
        node = load_run(_scripted(toy_view_home)).nodes[3].node  # type: ignore[union-attr]
        assert node is not None
        done = node.model_copy(update={"id": 5, "parent": 3, "action": "improve"})
        with open(live / "journal.jsonl", "a") as f:
            f.write(JournalEvent(event="node", node_id=5, node=done).model_dump_json() + "\n")
        status, page = _get(server.url + page_name(live))
        assert status == 200 and 'data-status="running"' not in page
        status, index = _get(server.url)
        assert status == 200 and page_name(live) in index
        for bad in ("../run.json", f"{live.name}/run.json", "nodes/0/run.log", "%2e%2e/x"):
            assert _get(server.url + bad)[0] == 404, bad
    finally:
        server.stop()


def test_leaderboard_gains_cost_and_similarity_columns(toy_view_home: Path) -> None:
    df = collect(toy_view_home)
    assert set(EXTRA_COLUMNS) <= set(df.columns)
    scripted = df[df["model"] == "openai/gpt-4o-mini"].iloc[0]
    oracle = df[df["model"] == "oracle"].iloc[0]
    assert oracle["similarity"] == 1.0  # its one node is record i+1
    # The scripted run's best node is node 2 (similarity 0.5) or node 3 (1.0), as this machine's clock has it.
    run = load_run(_scripted(toy_view_home))
    assert run is not None and run.best in (2, 3)
    best_view = next(n for n in run.nodes if n.id == run.best)
    assert best_view.similarity is not None and scripted["similarity"] == best_view.similarity.lines
    # the fake server's usage: 120 in / 40 out per answer, except node 2 (3000 in) and 3 (2500 out)
    assert scripted["input_tokens"] == 6 * 120 + 3000 and scripted["output_tokens"] == 6 * 40 + 2500
    assert scripted["cost_usd"] > 0 and scripted["fsr_per_usd"] == pytest.approx(
        scripted["fsr"] / scripted["cost_usd"], rel=1e-2
    )
    assert scripted["cpu_hours"] > 0 and scripted["gpu_hours"] is None
    assert scripted["fsr_per_cpu_hour"] == pytest.approx(scripted["fsr"] / scripted["cpu_hours"])


def test_report_has_the_equal_budget_view(toy_view_home: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(toy_view_home, results, symlinks=True)
    res = runner.invoke(app, ["report", "--results-dir", str(results)])
    assert res.exit_code == 0, res.output
    md = (results / "report.md").read_text()
    assert "## FSR at equal budget" in md and "≤ 1 node" in md and "≤ $0.01" in md
    assert (results / "budget.png").read_bytes().startswith(b"\x89PNG")
    assert "FSR at equal budget" in (results / "report.html").read_text()


def test_a_run_that_just_started_renders(toy_view_home: Path, tmp_path: Path) -> None:
    """run.json written, nothing journaled yet, no score: the page says so instead of failing."""
    run_dir = tmp_path / "results" / "fresh"
    run_dir.mkdir(parents=True)
    info = json.loads((_oracle(toy_view_home) / "run.json").read_text())
    info.update(status="running", score=None, run_id="fresh")
    (run_dir / "run.json").write_text(json.dumps(info))
    run = load_run(run_dir)
    assert run is not None and run.nodes == [] and run.live
    page = render_run(run, refresh_s=5)
    assert "none yet" in page and 'http-equiv="refresh" content="5"' in page
    assert load_run(tmp_path / "results") is None  # not a run directory


def test_a_run_is_shown_against_the_records_it_kept(toy_view_home: Path, tmp_path: Path) -> None:
    """references/<record>/ holds the scripts the run was measured against: they win over this
    checkout's manifests (which may have changed, or be absent for a fetched track)."""
    from harness.rundir import read_run_info
    from harness.similarity import task_records

    run_dir = tmp_path / "run"
    shutil.copytree(_scripted(toy_view_home), run_dir, symlinks=True)
    kept = run_dir / "references" / "00-rate0.02" / "train.py"
    assert kept.is_file() and (run_dir / "references" / "01-rate0.04" / "train.py").is_file()
    kept.write_text(kept.read_text().replace("STEPS = 400", "STEPS = 401"))
    info = read_run_info(run_dir)
    assert info is not None
    records = task_records(info, run_dir)
    assert records.from_code is not None and "STEPS = 401" in records.from_code
    assert task_records(info).from_code is not None and "STEPS = 401" not in task_records(info).from_code  # type: ignore[operator]
    run = load_run(run_dir)
    assert run is not None and run.nodes[3].diff_record is not None and "-STEPS = 401" in run.nodes[3].diff_record
