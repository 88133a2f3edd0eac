"""`speedrun view` on a finished mini run: real training at a loosened target (slow).

By hand: `pytest -m slow tests/test_view_mini.py` (calibration of records 00 and 01, the
scripted model's five nodes and the oracle's one: about ten minutes on an idle 2-core machine)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.rundir import run_dirs
from harness.view import load_run
from harness.view.site import build_site, page_name
from tests import browser
from tests.viewrun import build_runs


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)
def test_mini_run_shows_every_node(tmp_path: Path, mini_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One thread per run, as CPU tracks are meant to run: two threads on a busy 2-core machine
    # made a step ten times slower.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    scripted, oracle = build_runs("mini", tmp_path / "results", mini_data_dir)
    assert scripted.status == "finished" and oracle.status == "finished"
    assert oracle.score is not None and oracle.score.valid_nodes == 1
    run = load_run(tmp_path / "results" / scripted.run_id)
    assert run is not None
    statuses = [n.status for n in run.nodes]
    assert statuses[0] == "buggy" and statuses[1] == "invalid" and statuses[3] == "valid" and statuses[4] == "failed"
    for n in run.nodes[:4]:
        assert n.diff_parent is not None and n.diff_record is not None and n.log is not None and n.exchanges
    assert all(n.curve for n in run.nodes[1:4])
    assert set(run.references) == {"00-baseline", "01-lr-schedule"}
    assert run.nodes[3].similarity is not None and run.nodes[3].similarity.lines == 1.0
    partial = run.nodes[2].similarity
    assert partial is not None and partial.matched_lines == 2 and partial.human_lines == 14  # the lr line, out and in
    oracle_run = load_run(tmp_path / "results" / oracle.run_id)
    assert oracle_run is not None and oracle_run.nodes[0].similarity is not None
    assert oracle_run.nodes[0].similarity.lines == 1.0

    index = build_site(tmp_path / "results", tmp_path / "site")
    assert index.is_file()
    if browser.why_not() is None:
        page = tmp_path / "site" / page_name(next(d for d in run_dirs(tmp_path / "results") if "gpt" in d.name))
        img = np.asarray(Image.open(browser.screenshot(page, tmp_path / "page.png")).convert("RGB"))
        assert img.shape[:2] == (3000, 1400)
