"""A node's life: code it (LLM + edits), run it (executor), judge it, analyse it, record it.

A node's files are saved when the model writes them (`nodes/<n>/code/`) and are the only
source for its children, its diff, its rule checks and its confirmation. The run happens in
a scratch copy (`nodes/<n>/workspace/`) that the candidate may change as it likes: the
harness reads back from it only the log the executor captured.
"""

from __future__ import annotations

import queue
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.audit import Finding, audit, violations
from harness.coder import CoderResult, Feedback, build_messages, unified_diff, write_candidate
from harness.coder.prompts import analysis_messages, bounded, log_tail, summarize
from harness.coder.transcript import recorded_call
from harness.errors import BudgetExceeded
from harness.eval.measure import saved_model_eval
from harness.eval.model_check import ModelCheck
from harness.events import Event, EventSink
from harness.execution.base import ExecResult, Executor, RunSpec
from harness.fsutil import write_text_atomic
from harness.logparse import parse_log_file
from harness.manifests.tracks import Task
from harness.models.base import CallContext, Model, ModelError, Usage
from harness.outcome import ClockCheck, RunResult, judge, verdict_reason
from harness.search.api import Action
from harness.search.budget import Budget
from harness.search.journal import ActionKind, Journal, Node, NodeStatus
from harness.search.workspace import source_files, write_files

ANALYSIS_MD = "analysis.md"
#: An analysis longer than this is cut before it goes into child prompts.
ANALYSIS_MAX_CHARS = 1500
DIFF_MAX_CHARS = 6000
CODE_DIR = "code"
WORKSPACE_DIR = "workspace"


@dataclass
class NodeSetup:
    """What every node of one search shares."""

    task: Task
    main_file: str
    start_files: dict[str, str]
    command: list[str]
    run_env: dict[str, str]
    time_limit_s: float
    target_description: str
    hint_levels: list[str]
    data_dir: Path | None = None
    gpus: str | None = None
    #: One `--gpus` value per run slot (disjoint shares of the GPUs); empty: every run gets `gpus`.
    gpu_slots: list[str | None] = field(default_factory=list)
    budget: Budget = field(default_factory=Budget)
    analyze: bool = False
    #: Record i's script: the auditor does not hold against a candidate what the record does too.
    baseline_code: str | None = None
    #: Record i's untimed share on this machine, when it has been measured.
    clock: ClockCheck | None = None
    #: Tracks whose runs save a model: what the harness evaluates it on.
    model_check: ModelCheck | None = None


@dataclass
class Job:
    """One node on its way through the stages."""

    node_id: int
    action: Action
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    depth: int = 0
    debug_depth: int = 0
    coded: CoderResult | None = None
    files: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    result: RunResult | None = None
    summary: str = ""


class Abandoned(Exception):
    """Raised in a coding thread after the search was interrupted: its answer would be dropped."""


def node_files(run_dir: Path, node_id: int) -> dict[str, str]:
    """A node's code as the model wrote it. Runs from before `code/` existed kept it only in the
    workspace, which is read (links not followed) for them alone."""
    ndir = run_dir / "nodes" / str(node_id)
    code = ndir / CODE_DIR
    if code.is_dir() and not code.is_symlink():
        return source_files(code, suffixes=None)
    return source_files(ndir / WORKSPACE_DIR)


class NodeWorker:
    """Does one stage of one node at a time; several threads share one worker."""

    def __init__(
        self,
        setup: NodeSetup,
        *,
        model: Model,
        executor: Executor,
        run_dir: Path,
        journal: Journal,
        journal_lock: threading.Lock,
        before_call: Callable[[], None],
        on_stop: Callable[[str], None],
        on_event: EventSink,
        slots: int = 1,
    ) -> None:
        self.setup = setup
        # Free run slots: a run holds one, and with it that slot's GPUs, from start to end.
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(slots):
            self._slots.put(slot)
        self.model = model
        self.executor = executor
        self.run_dir = run_dir
        self.journal = journal
        self.journal_lock = journal_lock
        self.before_call = before_call
        self.stop = on_stop
        self.emit = on_event

    def node_dir(self, node_id: int) -> Path:
        return self.run_dir / "nodes" / str(node_id)

    def files_of(self, node_id: int) -> dict[str, str]:
        return node_files(self.run_dir, node_id)

    # ---- the stages -----------------------------------------------------------------------

    def code(self, job: Job) -> Job | Node:
        """Ask the model for the candidate; a node that cannot run is finished here."""
        s = self.setup
        ndir = self.node_dir(job.node_id)
        if ndir.exists():
            shutil.rmtree(ndir)  # a half-done node from a stopped run starts over
        ndir.mkdir(parents=True)
        action = job.action
        parent = self.journal.nodes.get(action.parent) if action.parent is not None else None
        job.depth = parent.depth + 1 if parent else 0
        job.debug_depth = parent.debug_depth + 1 if parent and action.kind == "debug" else 0
        self.emit(
            Event(
                "node_started",
                f"{action.kind}" + (f" from node {parent.id}" if parent else ""),
                node=job.node_id,
                data={"action": action.kind, "parent": action.parent},
            )
        )
        parent_files = self.files_of(parent.id) if parent else dict(s.start_files)
        if s.main_file not in parent_files:
            return self.finish(job, "failed", error=f"the parent node has no {s.main_file} to start from")
        messages = build_messages(
            s.task,
            s.main_file,
            parent_files[s.main_file],
            s.hint_levels,
            self._feedback(action, parent),
            s.target_description,
        )
        job.coded = coded = write_candidate(
            self.model,
            messages,
            parent_files,
            s.main_file,
            task_id=s.task.id,
            node_id=job.node_id,
            node_dir=ndir,
            before_call=self.before_call,
            after_call=s.budget.add,
        )
        if coded.files is None:
            return self.finish(job, "failed", error=coded.error)
        try:
            write_files(ndir / CODE_DIR, coded.files)
        except ValueError as exc:
            return self.finish(job, "failed", error=str(exc))
        job.files = coded.files
        (ndir / "diff.patch").write_text(unified_diff(parent_files, coded.files))
        self.emit(Event("node_coded", "; ".join(coded.notes[-1:]), node=job.node_id))
        job.findings = audit(coded.files[s.main_file], baseline=s.baseline_code)
        broken = [str(f) for f in violations(job.findings)]
        if broken:
            result = RunResult(rule_violations=broken, audit=job.findings, protection=["audited"])
            return self.finish(job, "invalid", result=result, error="; ".join(broken))
        return job

    def run(self, job: Job) -> Job | Node:
        """Run the candidate in a fresh scratch workspace; without analysis the node is finished here."""
        s = self.setup
        ndir = self.node_dir(job.node_id)
        write_files(ndir / WORKSPACE_DIR, job.files)
        slot = self._slots.get()
        try:
            ran, spec = self._execute(job, slot)
        finally:
            self._slots.put(slot)
        for warning in ran.warnings:
            self.emit(Event("warning", warning, node=job.node_id))
        parsed = parse_log_file(spec.log_path)
        target = s.task.target_val_loss
        model_eval = saved_model_eval(spec.workspace, parsed, ran, target, s.model_check)
        job.result = judge(
            parsed,
            ran,
            target,
            job.findings,
            s.clock,
            model_eval=model_eval,
            model_required=s.model_check is not None,
        )
        job.summary = summarize(job.result, parsed, s.task.target_val_loss)
        if s.analyze:
            return job
        return self.finish_run(job)

    def _execute(self, job: Job, slot: int) -> tuple[ExecResult, RunSpec]:
        s = self.setup
        ndir = self.node_dir(job.node_id)
        spec = RunSpec(
            command=s.command,
            workspace=ndir / WORKSPACE_DIR,
            log_path=ndir / "run.log",
            env=s.run_env,
            time_limit_s=s.time_limit_s,
            data_dir=s.data_dir,
            gpus=s.gpu_slots[slot] if s.gpu_slots else s.gpus,
            slot=slot,
            label=f"{self.run_dir.name}/{job.node_id}",
            # A sandboxed workspace vanishes with the run: the saved model is copied out.
            outputs=[s.model_check.model_file] if s.model_check else [],
        )
        self.emit(Event("node_running", "running", node=job.node_id))
        return self.executor.run(spec, on_line=lambda line: self._on_line(job.node_id, line)), spec

    def analyze(self, job: Job) -> Node:
        """One extra model call that reads the run and writes a short analysis for child prompts."""
        s = self.setup
        ndir = self.node_dir(job.node_id)
        assert job.result is not None
        diff = (ndir / "diff.patch").read_text() if (ndir / "diff.patch").is_file() else ""
        messages = analysis_messages(
            s.task,
            s.target_description,
            job.action.kind,
            job.coded.plan if job.coded else "",
            bounded(diff, DIFF_MAX_CHARS),
            job.summary,
            log_tail(ndir / "run.log"),
        )
        ctx = CallContext(
            task_id=s.task.id,
            file_name=s.main_file,
            current_code=job.files.get(s.main_file, ""),
            node_id=job.node_id,
            purpose="analysis",
        )
        extra = Usage()
        try:
            done = recorded_call(self.model, messages, ctx, ndir, self.before_call, s.budget.add)
            text, extra = done.text, done.usage
        except (ModelError, BudgetExceeded, Abandoned) as exc:
            # The run's result is worth keeping without its analysis; a budget stop still stops.
            if isinstance(exc, BudgetExceeded):
                self.stop(str(exc))
            self.emit(Event("warning", f"analysis skipped: {exc}", node=job.node_id))
            return self.finish_run(job, extra)
        text = bounded(text.strip(), ANALYSIS_MAX_CHARS)
        (ndir / ANALYSIS_MD).write_text(text + "\n")
        job.summary = f"{job.summary}\nAnalysis: {text}" if text else job.summary
        return self.finish_run(job, extra)

    def finish_run(self, job: Job, extra: Usage | None = None) -> Node:
        result = job.result
        assert result is not None
        # A run that broke a rule says which, as a crash says why and a miss by how much.
        error = verdict_reason(result, self.setup.task.target_val_loss)
        return self.finish(job, result.status, result=result, error=error, summary=job.summary, extra=extra)

    def finish(
        self,
        job: Job,
        status: NodeStatus,
        *,
        result: RunResult | None = None,
        error: str | None = None,
        summary: str = "",
        extra: Usage | None = None,
    ) -> Node:
        coded = job.coded or CoderResult(None)
        node = Node(
            id=job.node_id,
            parent=job.action.parent,
            action=job.action.kind,
            depth=job.depth,
            debug_depth=job.debug_depth,
            status=status,
            result=result,
            error=error,
            summary=summary,
            plan=coded.plan,
            edit_notes=coded.notes,
            usage=coded.usage + (extra or Usage()),
            started_at=job.started,
        )
        write_text_atomic(self.node_dir(job.node_id) / "result.json", node.model_dump_json(indent=2))
        with self.journal_lock:
            self.journal.finish(node)
        self.emit(Event("node_finished", one_line(node), node=job.node_id, data={"status": status}))
        return node

    def _on_line(self, node_id: int, line: str) -> None:
        if "val_loss:" in line or "train_loss:" in line:
            self.emit(Event("node_line", line.strip()[:200], node=node_id))

    def _feedback(self, action: Action, parent: Node | None) -> Feedback:
        kind: ActionKind = action.kind
        if parent is None or kind == "draft":
            return Feedback("draft", direction=action.note)
        if kind == "improve":
            return Feedback("improve", parent_summary=parent.summary or "(no results)", direction=action.note)
        tail = log_tail(self.node_dir(parent.id) / "run.log")
        return Feedback("debug", error=parent.error or "", log_tail=tail, direction=action.note)


def one_line(node: Node) -> str:
    r = node.result
    if node.status == "valid" and r and r.time_ms is not None:
        return f"valid · {r.time_ms / 1000:.1f} s to target"
    return f"{node.status}" + (f" · {node.error[:120]}" if node.error else "")
