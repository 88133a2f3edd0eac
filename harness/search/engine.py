"""The search engine: asks the scaffold what to do, and does it (code, run, parse, record).

One node = one candidate: the coder writes it from its parent, the executor runs it, the
parser reads its log, the journal records it. A node goes through up to three stages, each
with its own pool of `max_parallel` threads:

    chosen -> coding (LLM) -> ready -> running (executor) -> [analysis (LLM), --analyze] -> journal

Up to `max_parallel` candidates are coded ahead of the run slots, so a slot that frees finds
one waiting instead of idling while the model thinks. `schedule="async"` asks the scaffold for
more whenever fewer than `max_parallel` are chosen, being coded or waiting; `schedule="paper"`
keeps the paper's iteration barrier: one scaffold step, run to the end, then the next.

Resuming replays the journal: finished nodes stand, and a node started but not finished is
done again, from its coding on, under the same id.
"""

from __future__ import annotations

import random
import shutil
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from harness import rules
from harness.coder import CoderResult, Feedback, build_messages, unified_diff, write_candidate
from harness.coder.prompts import analysis_messages
from harness.coder.transcript import read_exchanges, recorded_call
from harness.confine import read_tail
from harness.errors import BudgetExceeded, ConfigError
from harness.events import Event, EventSink, ignore
from harness.execution.base import Executor, RunSpec
from harness.logparse import ParsedLog, parse_log_file
from harness.manifests.tracks import Task
from harness.models.base import CodingContext, Message, Model, ModelError, Usage
from harness.outcome import RunResult, judge
from harness.search.api import Action, Scaffold, ScaffoldContext, SearchState
from harness.search.budget import Budget
from harness.search.journal import ActionKind, Journal, JournalEvent, Node, NodeStatus
from harness.search.workspace import PathRefused, node_code, save_code, write_files

Schedule = Literal["async", "paper"]
LOG_TAIL_LINES = 60
LOG_TAIL_CHARS = 4000
#: Where a scaffold's own LLM calls are transcribed, under the run directory.
SCAFFOLD_DIR = "scaffold"
ANALYSIS_MD = "analysis.md"
#: An analysis longer than this is cut before it goes into child prompts.
ANALYSIS_MAX_CHARS = 1500
DIFF_MAX_CHARS = 6000


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
    #: After each run, ask the model for a short analysis (saved and shown to child prompts).
    analyze: bool = False


# ---- what travels between the stages ---------------------------------------------------------


@dataclass
class _Job:
    node_id: int
    action: Action
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    depth: int = 0
    debug_depth: int = 0
    coded: CoderResult | None = None
    files: dict[str, str] = field(default_factory=dict)
    result: RunResult | None = None
    summary: str = ""


class _Abandoned(Exception):
    """Raised in a coding thread after the search was interrupted: its answer would be dropped."""


class _Stages:
    """The futures of each stage, and the jobs waiting between stages: chosen but not yet being
    coded (`queued`), and coded but waiting for a run slot (`ready`)."""

    def __init__(self) -> None:
        self.queued: deque[_Job] = deque()
        self.coding: dict[Future[_Job | Node], _Job] = {}
        self.ready: deque[_Job] = deque()
        self.running: dict[Future[_Job | Node], _Job] = {}
        self.analysing: dict[Future[_Job | Node], _Job] = {}

    def futures(self) -> list[Future[_Job | Node]]:
        return [*self.coding, *self.running, *self.analysing]

    def jobs(self) -> list[_Job]:
        return [*self.queued, *self.coding.values(), *self.ready, *self.running.values(), *self.analysing.values()]

    def ahead(self) -> int:
        """Jobs not yet running: what the coders have in hand or in line."""
        return len(self.queued) + len(self.coding) + len(self.ready)

    def __bool__(self) -> bool:
        return bool(self.queued or self.coding or self.ready or self.running or self.analysing)


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
        if config.max_parallel < 1:
            raise ConfigError(f"--max-parallel must be at least 1, got {config.max_parallel}")
        self.cfg = config
        self.model = model
        self.scaffold = scaffold
        self.executor = executor
        self.run_dir = run_dir
        self.journal = Journal(run_dir)
        self.emit = on_event
        self.stop_reason: str | None = None
        self.context = _EngineContext(self)
        self._abandon = threading.Event()
        # Workers finish nodes while the scheduler reads the tree: one consistent view at a time.
        self._journal_lock = threading.Lock()
        self.model.on_status = lambda msg: self.emit(Event("model_status", msg))

    # ---- the loop -------------------------------------------------------------------------

    def run(self) -> str:
        """Search until the scaffold's budget is spent or a budget stops it: `finished` or `stopped`.

        Ctrl-C (or an exception) stops starting anything, lets what is being coded or run
        finish and be journaled, and re-raises; a second Ctrl-C abandons those too."""
        n = self.cfg.max_parallel
        pools = [ThreadPoolExecutor(n, thread_name_prefix=f"node-{s}") for s in ("code", "run", "analysis")]
        self._code_pool, self._run_pool, self._analysis_pool = pools
        stages = _Stages()
        try:
            self._resume(stages)
            self._loop(stages)
        except BaseException:
            self._abandon.set()
            for pool in pools:
                pool.shutdown(wait=False, cancel_futures=True)
            busy = len(stages.coding) + len(stages.running) + len(stages.analysing)
            if busy:
                self.emit(Event("warning", f"stopping: waiting for {busy} node(s) under way (Ctrl-C again to abandon)"))
            for pool in pools:
                pool.shutdown(wait=True)
            self._keep_finished_runs(stages)
            raise
        for pool in pools:
            pool.shutdown(wait=True)
        if self.stop_reason:
            self.journal.append(JournalEvent(event="stopped", detail=self.stop_reason))
            self.emit(Event("stopped", self.stop_reason))
            return "stopped"
        return "finished"

    def _resume(self, stages: _Stages) -> None:
        redo = self.journal.unfinished()
        if not redo:
            return
        self.emit(Event("info", f"resuming: {len(redo)} unfinished node(s) start again"))
        self.journal.append(JournalEvent(event="resumed", detail=f"redo {sorted(redo)}"))
        notes = _started_notes(self.journal.path)
        for node_id, (kind, parent) in redo.items():
            self._submit_coding(stages, _Job(node_id, Action(kind, parent, notes.get(node_id, ""))))

    def _keep_finished_runs(self, stages: _Stages) -> None:
        """After an interrupt, a run that ended but was not analysed yet is kept without its analysis."""
        for fut in stages.running:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                out = fut.result()
                if isinstance(out, _Job):
                    self._finish_run(out)

    def _loop(self, stages: _Stages) -> None:
        while True:
            self._fill_run_slots(stages)
            self._fill_coders(stages)
            if self.stop_reason is None:
                self._select(stages)
                self._fill_coders(stages)
            if not stages:
                return
            done, _ = wait(stages.futures(), return_when=FIRST_COMPLETED)
            for fut in done:
                self._collect(stages, fut)

    def _select(self, stages: _Stages) -> None:
        """Ask the scaffold for more work: after the barrier (paper), or to keep the coders ahead."""
        if self.cfg.schedule == "paper":
            if not stages:
                self._ask(stages)
            return
        while stages.ahead() < self.cfg.max_parallel and self.stop_reason is None:
            if not self._ask(stages):
                return

    def _ask(self, stages: _Stages) -> bool:
        """One scaffold step; False when it started nothing (budget spent, or it waits)."""
        pending = [job.action for job in stages.jobs()]
        with self._journal_lock:
            done = self.journal.all()
        budget_left = self.scaffold.budget - len(done) - len(pending)
        if budget_left <= 0:
            return False
        rng = search_rng(self.cfg.seed, len(done), len(pending))
        state = SearchState(nodes=done, pending=pending, budget_left=budget_left, rng=rng, context=self.context)
        try:
            actions = self.scaffold.step(state)[:budget_left]
        except BudgetExceeded as exc:
            self.stop_reason = str(exc)
            return False
        for action in actions:
            with self._journal_lock:
                node_id = self.journal.next_id()
                self.journal.append(
                    JournalEvent(
                        event="started", node_id=node_id, action=action.kind, parent=action.parent, detail=action.note
                    )
                )
            self._submit_coding(stages, _Job(node_id, action))
        return bool(actions)

    def _submit_coding(self, stages: _Stages, job: _Job) -> None:
        stages.queued.append(job)

    def _fill_coders(self, stages: _Stages) -> None:
        # At most max_parallel candidates coded ahead of the run slots: a large batch (flat's
        # twenty drafts) is not paid for long before it can run, nor lost wholesale to a Ctrl-C.
        while stages.queued and len(stages.coding) + len(stages.ready) < self.cfg.max_parallel:
            job = stages.queued.popleft()
            stages.coding[self._code_pool.submit(self._code, job)] = job

    def _fill_run_slots(self, stages: _Stages) -> None:
        while stages.ready and len(stages.running) < self.cfg.max_parallel:
            job = stages.ready.popleft()
            stages.running[self._run_pool.submit(self._run, job)] = job

    def _collect(self, stages: _Stages, fut: Future[_Job | Node]) -> None:
        """Move a node on from the stage that just finished with it."""
        coded = stages.coding.pop(fut, None)
        ran = stages.running.pop(fut, None)
        stages.analysing.pop(fut, None)
        exc = fut.exception()
        if isinstance(exc, BudgetExceeded):
            # The node stays started-but-unfinished: a resume with a higher budget redoes it.
            self.stop_reason = self.stop_reason or str(exc)
            return
        if exc is not None:
            raise exc
        out = fut.result()
        if isinstance(out, Node):
            return  # finished, and journaled, by its stage
        if coded is not None:
            stages.ready.append(out)
        elif ran is not None:
            stages.analysing[self._analysis_pool.submit(self._analyze, out)] = out

    # ---- the stages of one node -------------------------------------------------------------

    def node_dir(self, node_id: int) -> Path:
        return self.run_dir / "nodes" / str(node_id)

    def _code(self, job: _Job) -> _Job | Node:
        """Ask the model for the candidate; a node that cannot run is finished here."""
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
        parent_files = self.files_of(parent.id) if parent else dict(self.cfg.start_files)
        if self.cfg.main_file not in parent_files:
            # Only a node of an older run (its code read from its workspace) can lack it.
            return self._finish(job, "failed", error=f"node {action.parent} has no readable {self.cfg.main_file}")
        messages = build_messages(
            self.cfg.task,
            self.cfg.main_file,
            parent_files[self.cfg.main_file],
            self.cfg.hint_levels,
            self._feedback(action.kind, parent),
            self.cfg.target_description,
        )
        if action.note:
            messages = _with_note(messages, action.note, self.cfg.main_file)
        job.coded = coded = write_candidate(
            self.model,
            messages,
            parent_files,
            self.cfg.main_file,
            task_id=self.cfg.task.id,
            node_id=job.node_id,
            node_dir=ndir,
            before_call=self._before_call,
            after_call=self.cfg.budget.add,
        )
        if coded.files is None:
            return self._finish(job, "failed", error=coded.error)
        job.files = coded.files
        try:
            # The saved code is the node from now on; the workspace is a scratch copy for the run.
            save_code(ndir, coded.files)
            write_files(ndir / "workspace", coded.files)
        except (PathRefused, OSError) as exc:
            return self._finish(job, "failed", error=f"the candidate's files could not be saved: {exc}")
        (ndir / "diff.patch").write_text(unified_diff(parent_files, coded.files))
        self.emit(Event("node_coded", "; ".join(coded.notes[-1:]), node=job.node_id))
        violations = rules.check_code(coded.files[self.cfg.main_file])
        if violations:
            return self._finish(
                job, "invalid", result=RunResult(rule_violations=violations), error="; ".join(violations)
            )
        return job

    def _before_call(self) -> None:
        if self._abandon.is_set():
            raise _Abandoned("the search was interrupted")
        self.cfg.budget.check()

    def _run(self, job: _Job) -> _Job | Node:
        """Run the candidate and read its log; without analysis the node is finished here."""
        ndir = self.node_dir(job.node_id)
        spec = RunSpec(
            command=self.cfg.command,
            workspace=ndir / "workspace",
            log_path=ndir / "run.log",
            env=self.cfg.run_env,
            time_limit_s=self.cfg.time_limit_s,
            data_dir=self.cfg.data_dir,
            gpus=self.cfg.gpus,
            label=f"{self.run_dir.name}/{job.node_id}",
        )
        self.emit(Event("node_running", "running", node=job.node_id))
        ran = self.executor.run(spec, on_line=lambda line: self._on_line(job.node_id, line))
        for warning in ran.warnings:
            self.emit(Event("warning", warning, node=job.node_id))
        parsed = parse_log_file(spec.log_path)
        job.result = judge(parsed, ran, self.cfg.task.target_val_loss, [])
        if job.result.error is None and job.result.val_loss is None:
            # An exit status of 0 with nothing parsed is still a failure to debug, so say what failed.
            job.result.error = "the run printed no validation line (`step:S/N val_loss:...`)"
        job.summary = summarize(job.result, parsed, self.cfg.task.target_val_loss)
        if self.cfg.analyze:
            return job
        return self._finish_run(job)

    def _analyze(self, job: _Job) -> Node:
        """One extra model call that reads the run and writes a short analysis for child prompts."""
        ndir = self.node_dir(job.node_id)
        assert job.result is not None
        messages = analysis_messages(
            self.cfg.task,
            self.cfg.target_description,
            job.action.kind,
            job.coded.plan if job.coded else "",
            _bounded((ndir / "diff.patch").read_text() if (ndir / "diff.patch").is_file() else "", DIFF_MAX_CHARS),
            job.summary,
            log_tail(ndir / "run.log"),
        )
        ctx = CodingContext(
            task_id=self.cfg.task.id,
            file_name=self.cfg.main_file,
            current_code=job.files.get(self.cfg.main_file, ""),
            node_id=job.node_id,
            purpose="analysis",
        )
        extra = Usage()
        try:
            done = recorded_call(self.model, messages, ctx, ndir, self._before_call, self.cfg.budget.add)
            text, extra = done.text, done.usage
        except (ModelError, BudgetExceeded, _Abandoned) as exc:
            # The run's result is worth keeping without its analysis; a budget stop still stops.
            if isinstance(exc, BudgetExceeded):
                self.stop_reason = self.stop_reason or str(exc)
            self.emit(Event("warning", f"analysis skipped: {exc}", node=job.node_id))
            return self._finish_run(job, extra)
        text = _bounded(text.strip(), ANALYSIS_MAX_CHARS)
        (ndir / ANALYSIS_MD).write_text(text + "\n")
        job.summary = f"{job.summary}\nAnalysis: {text}" if text else job.summary
        return self._finish_run(job, extra)

    def _finish_run(self, job: _Job, extra: Usage | None = None) -> Node:
        result = job.result
        assert result is not None
        status: NodeStatus
        if result.valid:
            status = "valid"
        elif result.crashed or result.val_loss is None:
            status = "buggy"
        else:
            status = "invalid"
        return self._finish(job, status, result=result, error=result.error, summary=job.summary, extra=extra)

    def _finish(
        self,
        job: _Job,
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
        (self.node_dir(job.node_id) / "result.json").write_text(node.model_dump_json(indent=2))
        with self._journal_lock:
            self.journal.finish(node)
        self.emit(Event("node_finished", _one_line(node), node=job.node_id, data={"status": status}))
        return node

    def _on_line(self, node_id: int, line: str) -> None:
        if "val_loss:" in line or "train_loss:" in line:
            self.emit(Event("node_line", line.strip()[:200], node=node_id))

    def files_of(self, node_id: int) -> dict[str, str]:
        return node_code(self.node_dir(node_id))

    def _feedback(self, kind: ActionKind, parent: Node | None) -> Feedback:
        if parent is None or kind == "draft":
            return Feedback("draft")
        if kind == "improve":
            return Feedback("improve", parent_summary=parent.summary or "(no results)")
        return Feedback("debug", error=parent.error or "", log_tail=log_tail(self.node_dir(parent.id) / "run.log"))

    def usage(self) -> Usage:
        """All LLM usage of this run: the nodes' and the scaffold's own calls."""
        return self.journal.usage() + scaffold_usage(self.run_dir)


class _EngineContext(ScaffoldContext):
    """The engine's side of `ScaffoldContext`: the evaluation's model, budget and transcripts."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.task = engine.cfg.task
        # Numbered on from a resumed run's calls, so its transcript keeps one number per call.
        self._calls = len(read_exchanges(engine.run_dir / SCAFFOLD_DIR))
        self._lock = threading.Lock()

    def complete(self, messages: Sequence[Message], purpose: str = "scaffold") -> str:
        eng = self.engine
        with self._lock:
            self._calls += 1
            attempt = self._calls
        ctx = CodingContext(
            task_id=eng.cfg.task.id,
            file_name=eng.cfg.main_file,
            current_code=eng.cfg.start_files.get(eng.cfg.main_file, ""),
            attempt=attempt,
            purpose=purpose,
        )
        completion = recorded_call(
            eng.model, list(messages), ctx, eng.run_dir / SCAFFOLD_DIR, eng._before_call, eng.cfg.budget.add
        )
        return completion.text

    def files(self, node_id: int | None) -> dict[str, str]:
        return dict(self.engine.cfg.start_files) if node_id is None else self.engine.files_of(node_id)


def search_rng(seed: int, done: int, pending: int) -> random.Random:
    """The generator a scaffold step gets: seeded by the journal's state, not by the clock, so
    a resumed (or repeated) search draws the same numbers at the same point."""
    return random.Random(f"{seed}:{done}:{pending}")


def scaffold_usage(run_dir: Path) -> Usage:
    """The usage of a scaffold's own LLM calls, read back from their transcript."""
    total = Usage()
    for ex in read_exchanges(run_dir / SCAFFOLD_DIR):
        if ex.completion is not None:
            total = total + ex.completion.usage
    return total


def spent(run_dir: Path) -> Usage:
    """What a run has spent on LLM calls so far (a resumed run's budget starts from it)."""
    return Journal(run_dir).usage() + scaffold_usage(run_dir)


def _started_notes(journal_path: Path) -> dict[int, str]:
    """The notes of started actions (kept in the journal's `detail`), for a resume to reuse."""
    notes: dict[int, str] = {}
    if not journal_path.is_file():
        return notes
    for line in journal_path.read_text().splitlines():
        try:
            ev = JournalEvent.model_validate_json(line)
        except ValueError:
            continue
        if ev.event == "started" and ev.node_id is not None and ev.detail:
            notes[ev.node_id] = ev.detail
    return notes


def _with_note(messages: list[Message], note: str, file_name: str) -> list[Message]:
    """The coder's prompt with a scaffold's note, placed before the code it applies to."""
    head = f"## Current {file_name}"
    user = messages[-1].content
    section = f"## Direction for this attempt\n\n{note}\n\n"
    at = user.rfind(head)
    content = user[:at] + section + user[at:] if at >= 0 else f"{user}\n\n{section}"
    return [*messages[:-1], Message(role=messages[-1].role, content=content)]


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20].rstrip() + "\n[... cut ...]"


def log_tail(path: Path) -> str:
    """The end of a log, bounded in lines and characters (a flooding script must not flood the prompt)."""
    # Not followed through a link: an unsandboxed run could swap its log for one to a key file.
    text = read_tail(path, 64 * 1024).decode("utf-8", errors="replace")
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


__all__ = [
    "Engine",
    "EngineConfig",
    "Schedule",
    "log_tail",
    "python_command",
    "scaffold_usage",
    "search_rng",
    "spent",
    "summarize",
]
