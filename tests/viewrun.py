"""A finished run with every kind of node, for the viewer's tests and the screenshot in docs/.

A scripted model (the fake OpenAI server, through the real SDK, so tokens and cost are
recorded as for a vendor's model) answers five nodes of a greedy search that always debugs:

    0 draft   crashes, printing a `<script>` tag and an HTML error message (hostile output)
    1 draft   runs but stops before the target (invalid)
    2 draft   a partial or different change that reaches the target (valid)
    3 debug   of node 0: the whole human change (valid, similarity 1)
    4 improve edits that do not apply, three times (failed)

Beside it, the oracle solves the same task in one node. Everything runs for real: the toy
track in a second (the default suite), the mini track at a loosened target in minutes
(`build_runs("mini", ...)`, a slow test and the docs' screenshot)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from harness.coder.edits import render_block
from harness.eval.evaluate import EvalConfig, RunInfo, evaluate
from harness.manifests.tracks import get_task, load_track
from tests.fake_llm_server import FakeLLMServer, Reply, answer

HOSTILE_LOG = "<script>document.title='pwned'</script>"
HOSTILE_ANSWER = "<img src=x onerror=\"document.title='pwned'\">"
SCRIPTED_MODEL = "openai/gpt-4o-mini"

#: Per track: (task, loosened target or None, anchor line for the crash, (search, replace) of the
#: invalid node, (search, replace) of the valid node).
TRACKS: dict[str, tuple[str, float | None, str, tuple[str, str], tuple[str, str]]] = {
    "toy": (
        "toy-0",
        None,
        "train_ms = 0.0\n",
        ("STEPS = 400\n", "STEPS = 10\n"),
        ("RATE = 0.02\n", "RATE = 0.03\n"),
    ),
    "mini": (
        "mini-0",
        2.49,
        "args = Hyperparameters()\n",
        (
            "    num_iterations: int = 5000  # step budget N (also the length of the cosine decay)\n",
            "    num_iterations: int = 20  # a far shorter budget\n",
        ),
        ("    learning_rate: float = 1e-3\n", "    learning_rate: float = 3e-3\n"),
    ),
}


def scripted_replies(track: str) -> list[Reply]:
    """The fake server's answers, in the order the search asks (one node at a time)."""
    task_id, _target, anchor, invalid, valid = TRACKS[track]
    loaded = load_track(track)
    task = get_task(task_id)
    script = loaded.record(task.from_record).script
    human = loaded.record(task.to_record).code()
    crash = anchor + f'print("{HOSTILE_LOG}", flush=True)\nraise RuntimeError("<b>boom</b> {HOSTILE_LOG}")\n'
    missing = render_block(script, "a line that is nowhere in the file\n", "anything\n")
    return [
        answer(f"Plan: crash on purpose. {HOSTILE_ANSWER}\n\n" + render_block(script, anchor, crash)),
        answer("Plan: a much shorter step budget.\n\n" + render_block(script, *invalid)),
        answer("Plan: a higher learning rate.\n\n" + render_block(script, *valid), input_tokens=3000),
        answer(f"Plan: remove the crash and make the recorded change.\n\n```python\n{human}```\n", output_tokens=2500),
        *[answer("Plan: an edit of a line I misremember.\n\n" + missing) for _ in range(3)],
    ]


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build_runs(track: str, results_dir: Path, data_dir: Path | None = None) -> tuple[RunInfo, RunInfo]:
    """The scripted run and the oracle's run of the track's task, finished under `results_dir`."""
    task_id, target, *_ = TRACKS[track]
    common: dict[str, object] = dict(
        task=task_id,
        hints="pseudocode+text",
        results_dir=results_dir,
        data_dir=data_dir,
        target_val_loss=target,
        calibration_runs=1,
        confirm_runs=0,
        # A shared machine can make a smoke-scale mini run ten times slower than usual.
        time_limit_s=3 * 3600,
    )
    with FakeLLMServer() as server, _env(OPENAI_API_KEY="sk-test"):
        server.script(*scripted_replies(track))
        scripted = evaluate(
            EvalConfig.model_validate(
                {
                    **common,
                    "model": SCRIPTED_MODEL,
                    "model_args": {"base_url": server.openai_base_url, "retry_base_s": 0.01},
                    "scaffold": "greedy",
                    "scaffold_args": {"nodes": 5, "initial_drafts": 3, "debug_prob": 1.0},
                }
            )
        )
    oracle = evaluate(EvalConfig.model_validate({**common, "model": "oracle", "scaffold_args": {"nodes": 1}}))
    return scripted, oracle


def build_toy_results(root: Path) -> Path:
    """The toy track's two runs under `root/results` (manifests in `root/home`, cache in `root/cache`)."""
    from tests.toytrack import write_toy_track

    home = write_toy_track(root / "home")
    with _env(SPEEDRUN_HOME=str(home), SPEEDRUN_CACHE=str(root / "cache")):
        build_runs("toy", root / "results")
    return root / "results"
