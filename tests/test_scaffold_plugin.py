"""The documented plug-in example (docs/examples/my_scaffold.py) runs an evaluation on the toy
track, loaded in each of the three ways docs/scaffolds.md describes: a file path, a module path,
and a `speedrun.scaffolds` entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.coder.transcript import read_exchanges
from harness.errors import ConfigError
from harness.eval.log import read_run
from harness.search import broken_plugins, load_scaffold_class, scaffold_classes
from tests.conftest import REPO

EXAMPLES = REPO / "docs" / "examples"
runner = CliRunner()


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs give paths relative to the checkout."""
    monkeypatch.chdir(REPO)


def _eval(results: Path, scaffold: str, *extra: str) -> Path:
    res = runner.invoke(
        app,
        [
            "eval",
            "--track",
            "toy",
            "--model",
            "oracle",
            "--scaffold",
            scaffold,
            "--nodes",
            "3",
            "--scaffold-arg",
            "epsilon=0.5",
            "--calibration-runs",
            "1",
            "--confirm-runs",
            "0",
            "--results-dir",
            str(results),
            *extra,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "toy-0: FSR" in res.output
    (run_dir,) = [p.parent for p in results.glob("*/run.json")]
    info = read_run(run_dir)
    assert info is not None and info.status == "finished" and info.score is not None
    assert info.score.nodes == 3 and info.score.fsr > 0.5
    assert info.scaffold_params["epsilon"] == 0.5 and info.scaffold_params["drafts"] == 2
    return run_dir


def test_by_file_path(toy_home: Path, tmp_path: Path) -> None:
    run_dir = _eval(tmp_path / "r", "docs/examples/my_scaffold.py:EpsilonGreedy")
    nodes = [json.loads(p.read_text()) for p in sorted(run_dir.glob("nodes/*/result.json"))]
    assert [n["action"] for n in nodes] == ["draft", "draft", "improve"]


def test_by_module_path(toy_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    _eval(tmp_path / "r", "my_scaffold:EpsilonGreedy")


def test_by_entry_point(toy_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `pip install` of a package declaring the entry point leaves on sys.path.
    site = tmp_path / "site"
    dist = site / "speedrun_example_scaffolds-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: speedrun-example-scaffolds\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[speedrun.scaffolds]\neps = my_scaffold:EpsilonGreedy\nbroken = no_such_module:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLES))
    assert scaffold_classes()["eps"].name == "epsilon-greedy"
    assert "broken" not in scaffold_classes() and "no_such_module" in broken_plugins()["broken"]
    listed = runner.invoke(app, ["scaffolds", "list"], env={"COLUMNS": "250"})
    assert listed.exit_code == 0 and "eps" in listed.output and "multi-aide" in listed.output
    with pytest.raises(ConfigError, match="failed to load"):
        load_scaffold_class("broken")
    _eval(tmp_path / "r", "eps")


def test_the_idea_first_example_asks_the_model(toy_home: Path, tmp_path: Path) -> None:
    run_dir = _eval(tmp_path / "r", "docs/examples/my_scaffold.py:IdeaFirst")
    ideas = read_exchanges(run_dir / "scaffold")
    assert [ex.purpose for ex in ideas] == ["ideation"] * 3
    prompt = read_exchanges(run_dir / "nodes" / "2")[0].messages[-1].content
    assert "## Direction for this attempt\n\nIdea to try: [oracle] no ideation" in prompt
    info = read_run(run_dir)
    assert info is not None and info.usage.calls == 6


def test_bad_specs_say_what_is_wrong(toy_home: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_scaffold_class("./nowhere.py:X")
    with pytest.raises(ConfigError, match="has no attribute 'Nope'"):
        load_scaffold_class("docs/examples/my_scaffold.py:Nope")
    with pytest.raises(ConfigError, match="not a Scaffold subclass"):
        load_scaffold_class("docs/examples/my_scaffold.py:EpsilonParams")
    with pytest.raises(ConfigError, match="cannot import scaffold module"):
        load_scaffold_class("no_such_pkg.mod:X")
