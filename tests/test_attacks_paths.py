"""Hostile model answers and candidate runs against the harness around the sandbox: file names
that leave the workspace, a run that rewrites, links or deletes its own script, a cumulative
chain that would hand a host file to the next prompt, unisolated runs of model-written code.

The runs here use `--executor-arg sandbox=none` on purpose: they show that the harness's own
defences (names confined, code saved at coding time, no-follow reads) hold even where the run
can write its workspace; the sandboxes themselves are tested in test_attacks_executors.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.coder.edits import EditError, apply_answer, render_block, safe_relpath
from harness.errors import ConfigError
from harness.eval.cumulative import run_chain
from harness.eval.evaluate import EvalConfig, Evaluation, evaluate
from harness.execution import bwrap
from harness.execution.local import LocalExecutor
from harness.models.base import CallContext, Completion, Message, Model, Usage
from harness.search import get_scaffold
from harness.search.node import node_files
from tests.fake_llm_server import FakeLLMServer, answer
from tests.test_scaffolds import make_engine
from tests.toytrack import write_toy_track

LAST_LINE = "    train_ms += 1000 * (time.perf_counter() - t0)\n"


def _append(code: str) -> str:
    """An edit that appends `code` to the toy script, after its training loop."""
    return "Adding a step.\n\n" + render_block("train.py", LAST_LINE, LAST_LINE + code)


class HostileModel(Model):
    """Answers node 0 with `first`, every later node with `later` (default: a no-op edit)."""

    provider = "hostile"

    def __init__(self, first: str, later: str | None = None) -> None:
        super().__init__("hostile")
        self.first = first
        self.later = later
        self.prompts: dict[int, list[str]] = {}

    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        node = context.node_id if context.node_id is not None else -1
        self.prompts.setdefault(node, []).append("\n".join(m.content for m in messages))
        noop = render_block("train.py", 'MODE = "ok"\n', 'MODE = "ok"\n')
        text = self.first if node == 0 else self.later or noop
        return Completion(text=text, usage=Usage(calls=1))


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret"
    path.write_text("HOST-SECRET-7f3a\n")
    path.chmod(0o600)
    return path


# ---- file names a model chose ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../../../../x.py",
        "/etc/cron.d/x.py",
        "sub/../../x.py",
        "./train.py",
        "a//b.py",
        "../../confirm.json",
        "../../../../.cache/speedrun/calibration/mini/local.json",
    ],
)
def test_a_file_name_outside_the_workspace_is_refused_with_the_reason(name: str) -> None:
    answer_text = render_block(name, "", "print('owned')\n")
    with pytest.raises(EditError, match="refused"):
        apply_answer(answer_text, {"train.py": "x = 1\n"}, "train.py")


@pytest.mark.parametrize("name", ["~/.bashrc.py", "x\x1b[2J.py", "a\\..\\b.py", "c:/x.py", "", "a/" * 9 + "x.py"])
def test_names_the_parser_would_not_take_are_refused_too(name: str) -> None:
    with pytest.raises(EditError, match="refused"):
        safe_relpath(name)


def test_a_new_file_in_a_subdirectory_is_still_fine() -> None:
    out = apply_answer(render_block("sub/util.py", "", "y = 2\n"), {"train.py": "x = 1\n"}, "train.py")
    assert out.files["sub/util.py"] == "y = 2\n"


def test_the_engine_writes_nothing_outside_the_node_and_tells_the_model_why(toy_home: Path, tmp_path: Path) -> None:
    escape = "../" * 8 + "escaped.py"
    model = HostileModel(render_block(escape, "", "print('owned')\n"))
    run_dir = tmp_path / "deep" / "er" / "run"
    engine = make_engine(run_dir, get_scaffold("flat", {"nodes": 1}), model)
    assert engine.run() == "finished"
    node = engine.journal.nodes[0]
    assert node.status == "failed" and node.error is not None and "refused" in node.error
    assert not list(tmp_path.rglob("escaped.py")) and not Path("/escaped.py").exists()
    # The reason went back to the model, as with any edit that does not apply.
    assert any("refused" in prompt for prompt in model.prompts[0][1:])


# ---- a node's code is what the model wrote --------------------------------------------------------

TAMPERING = """
import os
if os.path.exists("train.py"):
    os.remove("train.py")
    os.symlink("$secret", "train.py")
    for i in range(20):
        with open(f"junk{i}.py", "w") as f:
            f.write("x = 1  # " + "y" * (100 << 10) + "\\n")
"""


def test_children_diff_and_rules_see_the_saved_code_not_the_workspace(
    toy_home: Path, tmp_path: Path, secret: Path
) -> None:
    hostile = TAMPERING.replace("$secret", str(secret))
    model = HostileModel(_append(hostile))
    engine = make_engine(tmp_path / "run", get_scaffold("tree", {"nodes": 2}), model, LocalExecutor(sandbox="none"))
    assert engine.run() == "finished"
    parent, child = engine.journal.nodes[0], engine.journal.nodes[1]
    assert parent.status == "valid" and child.parent == 0
    ws = tmp_path / "run" / "nodes" / "0" / "workspace"
    assert (ws / "train.py").is_symlink(), "the run did tamper with its workspace"
    saved = node_files(tmp_path / "run", 0)
    assert set(saved) == {"train.py"} and "os.symlink" in saved["train.py"]
    child_prompt = "\n".join(model.prompts[1])
    assert "os.symlink" in child_prompt and "HOST-SECRET" not in child_prompt
    # The child was made from the saved code alone: the parent's junk is not part of it.
    assert set(node_files(tmp_path / "run", 1)) == {"train.py"}
    assert "HOST-SECRET" not in (tmp_path / "run" / "nodes" / "1" / "diff.patch").read_text()
    for transcript in (tmp_path / "run").rglob("transcript.*"):
        assert "HOST-SECRET" not in transcript.read_text()


def test_a_script_that_deletes_itself_and_a_node_without_its_code_never_crash_the_engine(
    toy_home: Path, tmp_path: Path
) -> None:
    model = HostileModel(_append("import os\nos.remove(__file__)\n"))
    run_dir = tmp_path / "run"
    engine = make_engine(run_dir, get_scaffold("tree", {"nodes": 2}), model, LocalExecutor(sandbox="none"))
    assert engine.run() == "finished"
    assert engine.journal.nodes[0].status == "valid" and engine.journal.nodes[1].status == "valid"
    # A node of an older run has no saved code, and its script is gone from its workspace:
    # resuming with a larger budget makes its children fail, and the engine goes on.
    for node in ("0", "1"):
        for path in (run_dir / "nodes" / node / "code").iterdir():
            path.unlink()
        (run_dir / "nodes" / node / "code").rmdir()
    again = make_engine(run_dir, get_scaffold("tree", {"nodes": 3}), model, LocalExecutor(sandbox="none"))
    assert again.run() == "finished"
    third = again.journal.nodes[2]
    assert third.status == "failed" and third.error is not None and "no train.py" in third.error


# ---- cumulative chains and the refusal of unisolated runs ----------------------------------------


@pytest.fixture
def chain_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_toy_track(tmp_path / "home", rates=(0.02, 0.04, 0.08))
    monkeypatch.setenv("SPEEDRUN_HOME", str(root))
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    return root


def _openai_cfg(tmp_path: Path, server: FakeLLMServer, **kw: object) -> EvalConfig:
    base: dict[str, object] = {
        "task": "toy-0",
        "model": "openai/gpt-4o",
        "model_args": {"base_url": server.openai_base_url, "retry_base_s": 0.01},
        "scaffold": "flat",
        "scaffold_args": {"nodes": 1},
        "results_dir": tmp_path / "results",
        "calibration_runs": 1,
        "confirm_runs": 0,
        "executor_args": {"sandbox": "none"},
    }
    return EvalConfig.model_validate({**base, **kw})


def test_the_chain_hands_over_the_coded_text_never_a_host_file(chain_home: Path, tmp_path: Path, secret: Path) -> None:
    with FakeLLMServer() as server:
        server.script(answer(_append(TAMPERING.replace("$secret", str(secret)))))
        chain = run_chain(_openai_cfg(tmp_path, server), ["toy-0", "toy-1"])
        bodies = [json.dumps(r.body) for r in server.requests]
    first = chain.steps[0]
    assert first.hand_over_from == "best node" and first.hand_over is not None
    handed = first.hand_over.read_text()
    assert "os.symlink" in handed and "HOST-SECRET" not in handed
    assert not first.hand_over.is_symlink()
    assert len(bodies) >= 2 and not any("HOST-SECRET" in body for body in bodies)


def test_model_written_code_is_refused_without_isolation(
    chain_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # a machine without bubblewrap
    bwrap.bwrap_path.cache_clear()
    bwrap.unavailable.cache_clear()
    try:
        assert bwrap.unavailable() is not None
        with pytest.raises(ConfigError, match="sandbox=none"):
            LocalExecutor().check_untrusted()
        with FakeLLMServer() as server:
            with pytest.raises(ConfigError, match="unisolated"):
                evaluate(_openai_cfg(tmp_path, server, executor_args={}))
            assert server.requests == [], "refused before any model call"
            assert not (tmp_path / "results").exists(), "refused before anything was written"
        # The offline models answer with the human records' code: trusted, they still run.
        assert Evaluation(_openai_cfg(tmp_path, FakeLLMServer(), model="oracle", model_args={})).model.trusted_code
        LocalExecutor(sandbox="none").check_untrusted()  # the user's explicit choice
        with pytest.raises(ConfigError, match="bubblewrap"):
            LocalExecutor(sandbox="bwrap")
    finally:
        monkeypatch.undo()
        bwrap.bwrap_path.cache_clear()
        bwrap.unavailable.cache_clear()
