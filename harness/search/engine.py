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
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from harness.coder.transcript import read_exchanges, recorded_call
from harness.errors import BudgetExceeded, ConfigError
from harness.events import Event, EventSink, ignore
from harness.execution.base import Executor
from harness.models.base import CodingContext, Message, Model, Usage
from harness.search.api import Action, Scaffold, ScaffoldContext, SearchState
from harness.search.journal import Journal, JournalEvent, Node
from harness.search.node import Abandoned, Job, NodeSetup, NodeWorker

Schedule = Literal["async", "paper"]
#: Where a scaffold's own LLM calls are transcribed, under the run directory.
SCAFFOLD_DIR = "scaffold"


@dataclass
class EngineConfig(NodeSetup):
    """A search: what every node shares, and how many go at once."""

    max_parallel: int = 1
    schedule: Schedule = "async"
    seed: int = 0


# ---- what travels between the stages ---------------------------------------------------------


class _Stages:
    """The futures of each stage, and the jobs waiting between stages: chosen but not yet being
    coded (`queued`), and coded but waiting for a run slot (`ready`)."""

    def __init__(self) -> None:
        self.queued: deque[Job] = deque()
        self.coding: dict[Future[Job | Node], Job] = {}
        self.ready: deque[Job] = deque()
        self.running: dict[Future[Job | Node], Job] = {}
        self.analysing: dict[Future[Job | Node], Job] = {}

    def futures(self) -> list[Future[Job | Node]]:
        return [*self.coding, *self.running, *self.analysing]

    def jobs(self) -> list[Job]:
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
        self.worker = NodeWorker(
            config,
            model=model,
            executor=executor,
            run_dir=run_dir,
            journal=self.journal,
            journal_lock=self._journal_lock,
            before_call=self._before_call,
            on_stop=self._stop,
            on_event=on_event,
            slots=config.max_parallel,
        )

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
        for node_id, (kind, parent) in redo.items():
            self._submit_coding(stages, Job(node_id, Action(kind, parent, self.journal.notes.get(node_id, ""))))

    def _keep_finished_runs(self, stages: _Stages) -> None:
        """After an interrupt, a run that ended but was not analysed yet is kept without its analysis."""
        for fut in stages.running:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                out = fut.result()
                if isinstance(out, Job):
                    self.worker.finish_run(out)

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
            self._submit_coding(stages, Job(node_id, action))
        return bool(actions)

    def _submit_coding(self, stages: _Stages, job: Job) -> None:
        stages.queued.append(job)

    def _fill_coders(self, stages: _Stages) -> None:
        # At most max_parallel candidates coded ahead of the run slots: a large batch (flat's
        # twenty drafts) is not paid for long before it can run, nor lost wholesale to a Ctrl-C.
        while stages.queued and len(stages.coding) + len(stages.ready) < self.cfg.max_parallel:
            job = stages.queued.popleft()
            stages.coding[self._code_pool.submit(self.worker.code, job)] = job

    def _fill_run_slots(self, stages: _Stages) -> None:
        while stages.ready and len(stages.running) < self.cfg.max_parallel:
            job = stages.ready.popleft()
            stages.running[self._run_pool.submit(self.worker.run, job)] = job

    def _collect(self, stages: _Stages, fut: Future[Job | Node]) -> None:
        """Move a node on from the stage that just finished with it."""
        coded = stages.coding.pop(fut, None)
        ran = stages.running.pop(fut, None)
        stages.analysing.pop(fut, None)
        exc = fut.exception()
        if isinstance(exc, BudgetExceeded):
            # The node stays started-but-unfinished: a resume with a higher budget redoes it.
            self._stop(str(exc))
            return
        if exc is not None:
            raise exc
        out = fut.result()
        if isinstance(out, Node):
            return  # finished, and journaled, by its stage
        if coded is not None:
            stages.ready.append(out)
        elif ran is not None:
            stages.analysing[self._analysis_pool.submit(self.worker.analyze, out)] = out

    def _stop(self, reason: str) -> None:
        """Start no new node (a budget ran out); the first reason given is the one reported."""
        self.stop_reason = self.stop_reason or reason

    def _before_call(self) -> None:
        if self._abandon.is_set():
            raise Abandoned("the search was interrupted")
        self.cfg.budget.check()

    def node_dir(self, node_id: int) -> Path:
        return self.worker.node_dir(node_id)

    def files_of(self, node_id: int) -> dict[str, str]:
        return self.worker.files_of(node_id)

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


__all__ = [
    "Engine",
    "EngineConfig",
    "Schedule",
    "scaffold_usage",
    "search_rng",
    "spent",
]
