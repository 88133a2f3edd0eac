"""The search engine: asks the scaffold what to do, and does it (code, run, parse, record).

One node = one candidate: the coder writes it from its parent, the executor runs it, the
parser reads its log, the journal records it. Runs go on in worker threads, up to
`max_parallel` at once; with `schedule="paper"` the scaffold is asked again only when the
whole batch has finished (the paper's iteration barrier), with `"async"` as soon as a slot frees.
"""

from __future__ import annotations

import random
import shutil
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from harness import rules
from harness.budget import Budget
from harness.coder import Feedback, build_messages, unified_diff, write_candidate
from harness.errors import BudgetExceeded
from harness.events import Event, EventSink, ignore
from harness.execution.base import Executor, RunSpec
from harness.journal import ActionKind, Journal, JournalEvent, Node, NodeStatus
from harness.logparse import ParsedLog, parse_log_file
from harness.models.base import Model, Usage
from harness.outcome import RunResult, judge
from harness.registry import Task
from scaffolds.base import Action, Scaffold, SearchState

Schedule = Literal["async", "paper"]
LOG_TAIL_LINES = 60
LOG_TAIL_CHARS = 4000


@dataclass
class EngineConfig:
    task: Task
    main_file: str
    start_files: dict[str, str]
    command: list[str]
    run_env: dict[str, str]
    time_limit_s: float
    target_description: str
    hint_levels: list[str]
    data_dir: Path | None = None
    max_parallel: int = 1
    schedule: Schedule = "async"
    seed: int = 0
    gpus: str | None = None
    budget: Budget = field(default_factory=Budget)


class Engine:
    def __init__(
        self,
        config: EngineConfig,
        *,
        model: Model,
        scaffold: Scaffold,
        executor: Executor,
        run_dir: Path,
        on_event: EventSink = ignore,
    ) -> None:
        self.cfg = config
        self.model = model
        self.scaffold = scaffold
        self.executor = executor
        self.run_dir = run_dir
        self.journal = Journal(run_dir)
        self.emit = on_event
        self.stop_reason: str | None = None
        self._lock = threading.Lock()
        self.model.on_status = lambda msg: self.emit(Event("model_status", msg))

    # ---- the loop -------------------------------------------------------------------------

    def run(self) -> str:
        """Search until the scaffold's budget is spent or a budget stops it. Returns the status."""
        inflight: dict[Future[Node | None], Action] = {}
        redo = self.journal.unfinished()
        if redo:
            self.emit(Event("info", f"resuming: running {len(redo)} unfinished node(s) again"))
        with ThreadPoolExecutor(max_workers=self.cfg.max_parallel, thread_name_prefix="node") as pool:
            for node_id, (kind, parent) in redo.items():
                action = Action(kind, parent)
                inflight[pool.submit(self._node, node_id, action)] = action
            while True:
                if self.stop_reason is None and not (self.cfg.schedule == "paper" and inflight):
                    self._start_more(pool, inflight)
                if not inflight:
                    break
                done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                for fut in done:
                    inflight.pop(fut)
                    exc = fut.exception()
                    if isinstance(exc, BudgetExceeded):
                        self.stop_reason = str(exc)
                    elif exc is not None:
                        raise exc
        if self.stop_reason:
            self.journal.append(JournalEvent(event="stopped", detail=self.stop_reason))
            self.emit(Event("stopped", self.stop_reason))
            return "stopped"
        return "finished"

    def _start_more(self, pool: ThreadPoolExecutor, inflight: dict[Future[Node | None], Action]) -> None:
        pending = list(inflight.values())
        done = self.journal.all()
        budget_left = self.scaffold.budget - len(done) - len(pending)
        slots = self.cfg.max_parallel - len(pending)
        if budget_left <= 0 or slots <= 0:
            return
        # Seeded by the journal's state, so a resumed search makes the same choices.
        rng = random.Random(f"{self.cfg.seed}:{len(done)}:{len(pending)}")
        state = SearchState(nodes=done, pending=pending, budget_left=budget_left, rng=rng)
        for action in self.scaffold.next_actions(state, slots)[: min(slots, budget_left)]:
            node_id = self.journal.next_id()
            self.journal.append(
                JournalEvent(event="started", node_id=node_id, action=action.kind, parent=action.parent)
            )
            inflight[pool.submit(self._node, node_id, action)] = action

    # ---- one node ---------------------------------------------------------------------------

    def node_dir(self, node_id: int) -> Path:
        return self.run_dir / "nodes" / str(node_id)

    def _node(self, node_id: int, action: Action) -> Node | None:
        started = datetime.now(UTC)
        ndir = self.node_dir(node_id)
        if ndir.exists():
            shutil.rmtree(ndir)  # a half-done node from a killed run starts over
        ndir.mkdir(parents=True)
        parent = self.journal.nodes.get(action.parent) if action.parent is not None else None
        depth = parent.depth + 1 if parent else 0
        debug_depth = parent.debug_depth + 1 if parent and action.kind == "debug" else 0
        self.emit(
            Event(
                "node_started",
                f"{action.kind}" + (f" from node {parent.id}" if parent else ""),
                node=node_id,
                data={"action": action.kind, "parent": action.parent},
            )
        )
        parent_files = self.files_of(parent.id) if parent else dict(self.cfg.start_files)
        feedback = self._feedback(action.kind, parent)
        messages = build_messages(
            self.cfg.task,
            self.cfg.main_file,
            parent_files[self.cfg.main_file],
            self.cfg.hint_levels,
            feedback,
            self.cfg.target_description,
        )
        coded = write_candidate(
            self.model,
            messages,
            parent_files,
            self.cfg.main_file,
            task_id=self.cfg.task.id,
            node_id=node_id,
            node_dir=ndir,
            before_call=self.cfg.budget.check,
            after_call=self.cfg.budget.add,
        )

        def finish(
            status: NodeStatus,
            *,
            result: RunResult | None = None,
            error: str | None = None,
            summary: str = "",
        ) -> Node:
            node = Node(
                id=node_id,
                parent=action.parent,
                action=action.kind,
                depth=depth,
                debug_depth=debug_depth,
                status=status,
                result=result,
                error=error,
                summary=summary,
                plan=coded.plan,
                edit_notes=coded.notes,
                usage=coded.usage,
                started_at=started,
            )
            (ndir / "result.json").write_text(node.model_dump_json(indent=2))
            self.journal.finish(node)
            self.emit(Event("node_finished", _one_line(node), node=node_id, data={"status": status}))
            return node

        if coded.files is None:
            return finish("failed", error=coded.error)
        workspace = ndir / "workspace"
        workspace.mkdir()
        for name, text in coded.files.items():
            (workspace / name).parent.mkdir(parents=True, exist_ok=True)
            (workspace / name).write_text(text)
        (ndir / "diff.patch").write_text(unified_diff(parent_files, coded.files))
        self.emit(Event("node_coded", "; ".join(coded.notes[-1:]), node=node_id))
        violations = rules.check_code(coded.files[self.cfg.main_file])
        if violations:
            result = RunResult(rule_violations=violations)
            return finish("invalid", result=result, error="; ".join(violations))
        spec = RunSpec(
            command=self.cfg.command,
            workspace=workspace,
            log_path=ndir / "run.log",
            env=self.cfg.run_env,
            time_limit_s=self.cfg.time_limit_s,
            data_dir=self.cfg.data_dir,
            gpus=self.cfg.gpus,
            label=f"{self.run_dir.name}/{node_id}",
        )
        self.emit(Event("node_running", "running", node=node_id))
        ran = self.executor.run(spec, on_line=lambda line: self._on_line(node_id, line))
        parsed = parse_log_file(spec.log_path)
        result = judge(parsed, ran, self.cfg.task.target_val_loss, [])
        summary = summarize(result, parsed, self.cfg.task.target_val_loss)
        status: NodeStatus
        if result.valid:
            status = "valid"
        elif result.crashed or result.val_loss is None:
            status = "buggy"
        else:
            status = "invalid"
        return finish(status, result=result, error=result.error, summary=summary)

    def _on_line(self, node_id: int, line: str) -> None:
        if "val_loss:" in line or "train_loss:" in line:
            self.emit(Event("node_line", line.strip()[:200], node=node_id))

    def files_of(self, node_id: int) -> dict[str, str]:
        ws = self.node_dir(node_id) / "workspace"
        return {
            str(p.relative_to(ws)): p.read_text()
            for p in sorted(ws.rglob("*"))
            if p.is_file() and p.suffix in (".py", ".txt", ".json", ".toml", ".yaml", ".cfg", ".sh")
        }

    def _feedback(self, kind: ActionKind, parent: Node | None) -> Feedback:
        if parent is None or kind == "draft":
            return Feedback("draft")
        if kind == "improve":
            return Feedback("improve", parent_summary=parent.summary or "(no results)")
        return Feedback(
            "debug", error=parent.error or "", log_tail=log_tail(self.node_dir(parent.id) / "run.log")
        )

    def usage(self) -> Usage:
        return self.journal.usage()


def log_tail(path: Path) -> str:
    """The end of a log, bounded in lines and characters (a flooding script must not flood the prompt)."""
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
    return tail[-LOG_TAIL_CHARS:]


def summarize(result: RunResult, parsed: ParsedLog, target: float) -> str:
    """A short deterministic account of a run, for the next prompt and the journal."""
    parts = []
    if result.val_loss is not None:
        steps = f"{result.step}/{result.total_steps}" if result.total_steps else f"{result.step}"
        parts.append(f"final val_loss {result.val_loss:.4f} at step {steps}")
    if result.train_time_ms is not None:
        parts.append(f"train_time {result.train_time_ms:.0f} ms")
    if parsed.step_avg_ms is not None:
        parts.append(f"step_avg {parsed.step_avg_ms:.2f} ms")
    reached = "reached" if result.reached_target else "did NOT reach"
    parts.append(f"{reached} the target val_loss {target}")
    if len(parsed.val_history) > 1:
        pts = parsed.val_history[:: max(1, len(parsed.val_history) // 6)][-6:]
        parts.append("val_loss curve: " + ", ".join(f"{s}:{v:.3f}" for s, v in pts))
    if result.error:
        parts.append(f"error: {result.error}")
    return "; ".join(parts)


def _one_line(node: Node) -> str:
    r = node.result
    if node.status == "valid" and r and r.train_time_ms is not None:
        return f"valid · {r.train_time_ms / 1000:.1f} s to target"
    return f"{node.status}" + (f" · {node.error[:120]}" if node.error else "")


def python_command(command: list[str], local: bool) -> list[str]:
    """On the local executor, `python` means the harness's own interpreter (it has torch)."""
    if local and command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)
