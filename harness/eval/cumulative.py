"""Cumulative mode: a chain of tasks in which each starts from the agent's own solution.

Task i normally starts from human record i. In a chain, the first task does; every later
task starts from the agent's best valid solution of the task before it (or, when that task
found none, from the script that task started from), so mistakes and gains compound. Each
step is still scored against the human times, FSR_i = (t_i - t'_i) / (t_i - t_{i+1}), so the
per-step figures compare with ordinary evaluations.

A chain's runs live under `<results>/cumulative/<chain id>/`, apart from the ordinary runs so
that the leaderboard never averages the two kinds; `cumulative.json` there lists the steps.
Re-running the same command resumes the chain step by step.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from harness.confine import write_confined
from harness.eval.config import EvalConfig, run_name
from harness.eval.evaluate import evaluate
from harness.eval.log import RunInfo
from harness.events import Event, EventSink, ignore
from harness.fsutil import write_text_atomic
from harness.manifests.tracks import get_task, load_track
from harness.search.node import node_files

CHAIN_JSON = "cumulative.json"
#: Where a chain keeps the scripts it hands from one step to the next (copies of coded text).
HANDOVER_DIR = "handover"


class ChainStep(BaseModel):
    """One task of a chain: what it started from, how it ended, and what the next one gets."""

    task: str
    run_id: str
    #: `record`: human record i's script; `previous`: the previous step's solution or start.
    started_from: Literal["record", "previous"]
    start_file: Path | None = None
    status: str
    fsr: float | None = None
    best_node: int | None = None
    best_time_ms: float | None = None
    t_ref_ms: float | None = None
    t_next_ms: float | None = None
    #: The script the next step starts from.
    hand_over: Path | None = None
    #: `best node` (this step's best valid solution) or `start` (it had none: its own start).
    hand_over_from: Literal["best node", "start"] | None = None


class Chain(BaseModel):
    schema_version: int = 1
    chain_id: str
    tasks: list[str]
    config: EvalConfig
    status: Literal["running", "finished", "stopped"] = "running"
    steps: list[ChainStep] = Field(default_factory=list)
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def fsrs(self) -> list[float]:
        return [s.fsr for s in self.steps if s.fsr is not None]


def chain_dir(base: EvalConfig, first_task: str) -> Path:
    """Named by the agent and the first task: extending a chain's last task resumes it."""
    parts = [first_task, base.model, base.scaffold, base.hints, f"s{base.seed}"]
    if base.target_val_loss is not None:
        parts.append(f"target{base.target_val_loss:g}")
    if base.analyze:
        parts.append("analyze")
    return base.results_dir / "cumulative" / run_name(parts)


def run_chain(
    base: EvalConfig,
    task_ids: list[str],
    on_event: EventSink = ignore,
    on_step: Callable[[ChainStep, RunInfo], None] | None = None,
) -> Chain:
    """Evaluate `task_ids` in order, each from the previous one's solution. A step that stops
    (a cost budget) stops the chain; re-running resumes it."""
    if not task_ids:
        raise ValueError("a chain needs at least one task")
    root = chain_dir(base, task_ids[0])
    root.mkdir(parents=True, exist_ok=True)
    chain = Chain(chain_id=root.name, tasks=task_ids, config=base)
    start: Path | None = None
    for tid in task_ids:
        task = get_task(tid)
        cfg = base.model_copy(update={"task": tid, "results_dir": root, "start_from": start})
        on_event(Event("phase", f"cumulative step {len(chain.steps) + 1}/{len(task_ids)}: {tid}"))
        info = evaluate(cfg, on_event)
        run_dir = root / info.run_id
        step = ChainStep(
            task=tid,
            run_id=info.run_id,
            started_from="record" if start is None else "previous",
            start_file=start,
            status=info.status,
        )
        if info.score is not None:
            s = info.score
            step.fsr, step.best_node, step.best_time_ms = s.fsr, s.best_node, s.best_time_ms
            step.t_ref_ms, step.t_next_ms = s.reference.t_ref_ms, s.reference.t_next_ms
        best = _hand_over_best(root, run_dir, info, cfg, len(chain.steps) + 1)
        if best is not None:
            step.hand_over, step.hand_over_from = best, "best node"
        else:
            track = load_track(task.track)
            step.hand_over = start or track.record(task.from_record).script_path
            step.hand_over_from = "start"
        chain.steps.append(step)
        _write(root, chain)
        if on_step is not None:
            on_step(step, info)
        if info.status != "finished":
            chain.status = "stopped"
            _write(root, chain)
            return chain
        start = step.hand_over
    chain.status = "finished"
    _write(root, chain)
    return chain


def _hand_over_best(root: Path, run_dir: Path, info: RunInfo, cfg: EvalConfig, step: int) -> Path | None:
    """The main script of the step's best valid node, as the model wrote it, copied into the chain.

    A copy of the coded text (`node_files`: the node's saved code, read without following
    links), never a file from a workspace: a run could have replaced its script there by a link
    to a host file, whose text would then become the next task's prompt.
    """
    if info.score is None or info.score.best_node is None:
        return None
    task = get_task(cfg.task)
    script = load_track(task.track).record(task.from_record).script
    code = node_files(run_dir, info.score.best_node).get(script)
    if code is None:
        return None
    name = f"{step:02d}-{task.id}-node{info.score.best_node}{Path(script).suffix}"
    (root / HANDOVER_DIR).mkdir(exist_ok=True)
    write_confined(root / HANDOVER_DIR, name, code.encode("utf-8"))
    return root / HANDOVER_DIR / name


def _write(root: Path, chain: Chain) -> None:
    chain.updated_at = datetime.now(UTC)
    write_text_atomic(root / CHAIN_JSON, chain.model_dump_json(indent=2))


def read_chain(root: Path) -> Chain | None:
    path = root / CHAIN_JSON
    return Chain.model_validate_json(path.read_text()) if path.is_file() else None
