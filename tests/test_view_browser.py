"""The run page as a person sees it, in headless Chromium: the tree, a diff and a loss plot are
on the screen, the page's own script ran, and nothing a candidate or model wrote did."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.rundir import run_dirs
from harness.view.plots import STATUS_COLOURS
from harness.view.site import build_site, page_name
from tests import browser
from tests.viewrun import HOSTILE_LOG


@pytest.fixture(scope="module")
def chromium_ok() -> None:
    reason = browser.why_not()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def site(toy_view_home: Path, tmp_path: Path) -> Path:
    """The scripted run's page."""
    out = tmp_path / "site"
    build_site(toy_view_home, out)
    scripted = next(d for d in run_dirs(toy_view_home) if "gpt-4o-mini" in d.name)
    return out / page_name(scripted)


def _hex(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])


def pixels_of(img: np.ndarray, colour: str, tolerance: int = 6) -> int:
    """How many pixels of the screenshot have this colour."""
    return int((np.abs(img[:, :, :3].astype(int) - _hex(colour)).max(axis=2) <= tolerance).sum())


def test_screenshot_shows_the_tree_a_diff_and_a_loss_plot(chromium_ok: None, site: Path, tmp_path: Path) -> None:
    shot = browser.screenshot(site, tmp_path / "page.png")
    img = np.asarray(Image.open(shot).convert("RGB"))
    assert img.shape[:2] == (3000, 1400)
    # The tree: a node of each status the run has, as filled discs in the tree figure and dots.
    for status in ("valid", "invalid", "buggy", "failed"):
        assert pixels_of(img, STATUS_COLOURS[status]) > 100, status
    # A diff: added and removed lines on their backgrounds (the stylesheet applied under the CSP).
    assert pixels_of(img, "#d8f5dc", 2) > 2000 and pixels_of(img, "#fbdcdc", 2) > 2000
    # A loss plot: the node's curve, drawn in its colour.
    assert pixels_of(img, "#e6550d", 20) > 200
    # Not a blank page: most of it is white, but far from all.
    white = pixels_of(img, "#ffffff", 0) / (img.shape[0] * img.shape[1])
    assert 0.3 < white < 0.97


def test_the_page_script_runs_and_hostile_text_does_not(chromium_ok: None, site: Path) -> None:
    dom = browser.dom(site)
    assert 'data-ready="1"' in dom  # the page's own (hash-allowed) script ran
    assert "<title>toy-0__openai-gpt-4o-mini" in dom and "pwned" not in dom.split("</title>")[0]
    assert '<img src="x"' not in dom and "<b>boom</b>" not in dom
    assert len(re.findall(r"<script\b", dom)) == 1
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in dom  # shown, as text


def test_filters_hide_nodes_by_status_and_action(chromium_ok: None, site: Path) -> None:
    dom = browser.dom(site, "#hide=status:buggy,action:debug")
    sections = dict(re.findall(r'<section class="node [^"]*" id="node-(\d)"[^>]*?( hidden[^>]*)?>', dom))
    assert sorted(sections) == ["0", "1", "2", "3", "4"]
    assert {k for k, hidden in sections.items() if hidden} == {"0", "3"}  # node 0 is buggy, node 3 a debug
    assert re.search(r'<li data-status="buggy"[^>]*class="status-buggy filtered"', dom)


def test_the_hostile_check_can_fail(chromium_ok: None, tmp_path: Path) -> None:
    """The same check on a page that pastes the log in raw: the injected script runs."""
    raw = tmp_path / "raw.html"
    raw.write_text(f"<!doctype html><title>fine</title><pre>{HOSTILE_LOG}</pre>")
    assert "<title>pwned</title>" in browser.dom(raw)
