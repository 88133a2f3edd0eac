"""One evaluation: a model and a scaffold on one task, from data and references to the score.

    data -> reference times -> search (engine) -> confirmation -> FSR -> run.json + leaderboard

Re-running the same evaluation resumes it: finished nodes, reference times and confirmation
runs are read back, never redone. The parts live beside this module: `config` (what defines
a run), `log` (run.json), `setup` (the track's command, environment and executor),
`reference`, `confirm` and `score`.
"""

from __future__ import annotations

import platform
from typing import Any, Literal

import harness
from harness.audit import audit
from harness.coder.answer_log import count_answer_formats
from harness.coder.prompts import hints_for, parse_hint_levels
from harness.confine import read_bounded
from harness.data.shards import TrackData
from harness.data.tracks import ensure_data, run_threads
from harness.errors import ConfigError
from harness.eval.calibration import keep_references
from harness.eval.config import EvalConfig
from harness.eval.confirm import confirm
from harness.eval.log import Confirmation, Reference, RunInfo, TaskScore, read_run, write_run
from harness.eval.measure import MeasureSpec
from harness.eval.reference import reference_plan, reference_times
from harness.eval.score import confirmation_estimate, score_task
from harness.eval.setup import track_command, track_env, track_executor, track_model_check
from harness.events import Event, EventSink, ignore
from harness.execution.base import Executor
from harness.execution.gpus import gpu_slots
from harness.machine import this_machine
from harness.manifests.integrity import require_fetched
from harness.manifests.tracks import Task, Track, get_task, load_track
from harness.models import get_model
from harness.models.pricing import require_price
from harness.outcome import ClockCheck
from harness.scoring import need_another_pair
from harness.search import get_scaffold
from harness.search.budget import Budget
from harness.search.engine import Engine, EngineConfig, spent
from harness.search.journal import Journal
from harness.search.node import node_files
from harness.search.workspace import MAX_SOURCE_BYTES

#: The confirmation stops adding pairs once the FSR interval the pairs support is this narrow
#: (at `CONFIRM_CONFIDENCE`), or at `--confirm-runs` pairs. A range of four agreeing pairs covers
#: the median with 87.5%: the first point at which the rule can stop.
CONFIRM_TARGET_WIDTH = 0.3
CONFIRM_CONFIDENCE = 0.85


def _versions() -> dict[str, str]:
    out = {"speedrun": harness.__version__, "python": platform.python_version()}
    try:
        import torch

        out["torch"] = str(torch.__version__)
    except ImportError:
        pass
    return out


class Evaluation:
    """Prepared state of one evaluation: resolved task, model, scaffold, executor and run dir."""

    def __init__(self, cfg: EvalConfig, on_event: EventSink = ignore) -> None:
        self.cfg = cfg
        self.emit = on_event
        self.task: Task = get_task(cfg.task)
        self.track: Track = load_track(self.task.track)
        self.target = cfg.target_val_loss if cfg.target_val_loss is not None else self.task.target_val_loss
        # An overridden target (smoke runs) is the task's target everywhere: prompts, judging, scoring.
        self.task = self.task.model_copy(update={"target_val_loss": self.target})
        self.hint_levels = parse_hint_levels(cfg.hints)
        if self.track.source == "fetched":
            require_fetched(self.track.name)  # says to run `speedrun records fetch`, not "no hint"
        hints_for(self.task, self.hint_levels)  # a missing hint level fails now, not mid-run
        self.from_record = self.track.record(self.task.from_record)
        self.to_record = self.track.record(self.task.to_record)
        self.model = get_model(cfg.model, cfg.model_args)
        self.model.check_ready()  # a missing key fails before any training run
        require_price(self.model, cfg.max_cost_usd)  # a budget must see what calls cost
        self.scaffold = get_scaffold(cfg.scaffold, cfg.scaffold_args)
        self.run_dir = cfg.results_dir / cfg.run_id()
        self.time_limit_s = cfg.time_limit_s or self.track.time_limit_s
        if cfg.start_from is not None and not cfg.start_from.is_file():
            raise ConfigError(f"start file {cfg.start_from} not found")

    def start_code(self) -> str:
        """The script the search starts from: record i's, or `start_from`."""
        if self.cfg.start_from is None:
            return self.from_record.code()
        data = read_bounded(self.cfg.start_from, MAX_SOURCE_BYTES)  # not through a link
        if data is None:
            raise ConfigError(f"start file {self.cfg.start_from} is not a regular file of at most 1 MiB")
        return data.decode("utf-8", errors="replace")

    def executor(self) -> Executor:
        return track_executor(
            self.track, self.cfg.executor, self.cfg.executor_args, image=self.from_record.image, gpus=self.cfg.gpus
        )

    def gpu_slots(self) -> list[str | None]:
        """Each run slot's share of `--gpus` (Slurm gets counts and picks the devices itself)."""
        by: Literal["ids", "count"] = "count" if self.cfg.executor == "slurm" else "ids"
        return gpu_slots(self.cfg.gpus, self.cfg.max_parallel, by=by, available=len(this_machine().gpus) or None)

    def measure_spec(self, data: TrackData) -> MeasureSpec:
        # Every slot's share is the same size, so one command (--nproc_per_node) fits all, and
        # references are measured with the share a candidate gets.
        share = self.gpu_slots()[0]
        return MeasureSpec(
            command=track_command(self.track, share, local=self.cfg.executor == "local"),
            env=track_env(
                self.track,
                data,
                share,
                local=self.cfg.executor == "local",
                seed=self.cfg.seed,
                target_val_loss=self.target,
            ),
            time_limit_s=self.time_limit_s,
            target_val_loss=self.target,
            data_dir=data.data_dir,
            gpus=share,
            threads=run_threads(self.track),
            model_check=track_model_check(self.track, data),
        )

    def plan(self) -> dict[str, Any]:
        """What a run of this evaluation would execute (`--dry-run`): nothing is run or written."""
        from harness.data.tracks import planned_data
        from harness.execution.base import RunSpec

        data = planned_data(self.track, self.cfg.data_dir)
        spec = self.measure_spec(data)
        workspace = self.run_dir / "nodes" / "<n>" / "workspace"
        run = RunSpec(
            command=spec.command,
            workspace=workspace,
            log_path=workspace.parent / "run.log",
            env=spec.env,
            time_limit_s=spec.time_limit_s,
            data_dir=data.data_dir,
            gpus=spec.gpus,
            label="dry-run",
        )
        return {
            "task": self.task.id,
            "track": self.track.name,
            "records": [self.from_record.id, self.to_record.id],
            "target_val_loss": self.target,
            "reference_times": self.reference_plan(),
            "confirmation": {
                "against": self.from_record.id,
                "on": (
                    f"this machine, in rounds of record i, record {self.to_record.id} and the node"
                    if self.cfg.references == "measured"
                    else "this machine, side by side (record i, node, record i, node, ...)"
                ),
                "max_pairs": self.cfg.confirm_runs,
                "stops_when": f"the score's {CONFIRM_CONFIDENCE:.0%} interval is narrower than {CONFIRM_TARGET_WIDTH}",
            },
            "audit": self.audit_plan(),
            "model": self.cfg.model,
            "scaffold": self.scaffold.describe(),
            "hints": self.hint_levels,
            "run_dir": str(self.run_dir),
            "run": self.executor().describe(run),
        }

    def audit_plan(self) -> dict[str, list[str]]:
        """The auditor on the human change, as it will judge nodes: record i+1 against record i
        (what the oracle's node will be held to), and record i alone. Findings here are the
        auditor's false positives, since every record is allowed."""
        before, after = self.from_record.code(), self.to_record.code()
        return {
            f"{self.to_record.id} against {self.from_record.id}": [str(f) for f in audit(after, baseline=before)],
            self.from_record.id: [str(f) for f in audit(before)],
        }

    def reference_plan(self) -> dict[str, Any]:
        """Which reference times a run would use, measuring nothing."""
        key = self.executor().calibration_key
        return reference_plan(
            self.track,
            self.from_record,
            self.to_record,
            key,
            self.target,
            self.cfg.calibration_runs,
            self.cfg.references,
        )

    # ---- the steps -------------------------------------------------------------------------

    def run(self) -> RunInfo:
        executor = self.executor()
        if not self.model.trusted_code:
            executor.check_untrusted()  # model-written code needs isolation: refused before anything is made
        self.run_dir.mkdir(parents=True, exist_ok=True)
        info = self._open_run()
        self.emit(Event("phase", f"data for track {self.track.name}"))
        data = ensure_data(self.track, self.cfg.data_dir, progress=lambda m: self.emit(Event("info", m)))
        info.sandboxed = executor.sandboxed
        if not executor.sandboxed:
            info.status_detail = "local executor: candidates ran unsandboxed on this machine"
        write_run(self.run_dir, info)
        spec = self.measure_spec(data)
        try:
            reference = self.reference(executor, spec)
            self.emit(
                Event(
                    "phase",
                    f"search: {self.scaffold.name}, {self.scaffold.budget} nodes, model {self.cfg.model}",
                )
            )
            engine = Engine(
                EngineConfig(
                    task=self.task,
                    main_file=self.from_record.script,
                    start_files={self.from_record.script: self.start_code()},
                    command=spec.command,
                    run_env=spec.env,
                    time_limit_s=spec.time_limit_s,
                    target_description=self.target_description(),
                    hint_levels=self.hint_levels,
                    data_dir=data.data_dir,
                    max_parallel=self.cfg.max_parallel,
                    schedule=self.cfg.schedule,
                    seed=self.cfg.seed,
                    gpus=self.cfg.gpus,
                    gpu_slots=self.gpu_slots(),
                    budget=Budget(self.cfg.max_cost_usd, self.cfg.max_tokens, spent(self.run_dir)),
                    analyze=self.cfg.analyze,
                    baseline_code=self.from_record.code(),
                    model_check=spec.model_check,
                    clock=ClockCheck.for_task(reference.t_ref_untimed_s, reference.t_next_untimed_s, spec.threads),
                ),
                model=self.model,
                scaffold=self.scaffold,
                executor=executor,
                run_dir=self.run_dir,
                on_event=self.emit,
            )
            status = engine.run()
            info.usage = engine.usage()
            info.answer_formats = count_answer_formats(self.run_dir)
            if status == "stopped":
                info.status, info.status_detail = "stopped", engine.stop_reason or ""
                write_run(self.run_dir, info)
                return info
            info.score = self.score(engine.journal, reference, executor, spec)
            info.status = "finished"
            write_run(self.run_dir, info)
            return info
        except BaseException as exc:
            info.status = "failed" if not isinstance(exc, KeyboardInterrupt) else "stopped"
            info.status_detail = str(exc) or type(exc).__name__
            write_run(self.run_dir, info)
            raise
        finally:
            executor.close()

    def _open_run(self) -> RunInfo:
        old = read_run(self.run_dir)
        if old is not None:
            if old.config.identity() != self.cfg.identity():
                raise ConfigError(
                    f"{self.run_dir} holds a run with other settings; use another --results-dir "
                    "or remove that directory"
                )
            self.emit(Event("info", f"resuming {self.run_dir} ({len(Journal(self.run_dir).nodes)} nodes done)"))
            old.config = self.cfg
            old.status = "running"
            return old
        return RunInfo(
            run_id=self.run_dir.name,
            config=self.cfg,
            track=self.track.name,
            machine=this_machine(),
            versions=_versions(),
            model_settings=self.model.settings(),
            scaffold_params=self.scaffold.describe(),
        )

    def target_description(self) -> str:
        return (
            f"The script trains a model on track `{self.track.name}` ({self.track.title}). A run counts when "
            f"a printed validation loss reaches {self.target} or lower; the score is its train_time. "
            + (
                f"This script is your own solution of the previous task; record {self.from_record.id} "
                if self.cfg.start_from
                else f"Record {self.from_record.id} (this script) "
            )
            + f"needs about {self._ref_hint()}. "
            "Make it reach the target faster."
        )

    def _ref_hint(self) -> str:
        ref = self.from_record.reference
        return f"{ref.time_ms / 1000:.1f} s on its reference machine" if ref else "its reference time"

    def reference(self, executor: Executor, spec: MeasureSpec) -> Reference:
        ref = reference_times(
            self.track,
            self.from_record,
            self.to_record,
            executor,
            spec,
            runs=self.cfg.calibration_runs,
            loosened_target=self.cfg.target_val_loss is not None,
            emit=self.emit,
            source=self.cfg.references,
        )
        records, calibrated = [self.from_record, self.to_record], ref.source == "calibrated"
        keep_references(self.track, executor.calibration_key, self.target, records, self.run_dir, logs=calibrated)
        return ref

    def score(self, journal: Journal, ref: Reference, executor: Executor, spec: MeasureSpec) -> TaskScore:
        return score_task(
            self.task.id,
            journal,
            ref,
            min_speedup=self.track.min_speedup,
            confirm_runs=self.cfg.confirm_runs,
            target=self.target,
            unchanged=lambda node: self.node_files(node) == self.record_files(),
            confirm=lambda node: self.confirm(node, executor, spec, ref),
        )

    def node_files(self, node_id: int) -> dict[str, str]:
        return node_files(self.run_dir, node_id)

    def record_files(self) -> dict[str, str]:
        """Record i as a workspace: its one script."""
        return {self.from_record.script: self.from_record.code()}

    def confirm(self, node_id: int, executor: Executor, spec: MeasureSpec, reference: Reference) -> Confirmation:
        return confirm(
            self.run_dir,
            node_id,
            self.node_files(node_id),
            self.record_files(),
            self.from_record.id,
            self.from_record.script,
            runs=self.cfg.confirm_runs,
            executor=executor,
            spec=spec,
            emit=self.emit,
            seeds=[self.cfg.seed + k for k in range(self.cfg.seeds)],
            enough=lambda conf: self._enough_pairs(conf, reference),
            next_record=self._next_in_rounds(reference),
            next_untimed_s=reference.t_next_untimed_s,
        )

    def _next_in_rounds(self, reference: Reference) -> tuple[str, dict[str, str]] | None:
        """Record i+1 for the confirmation's rounds, where its time is measured here (calibrated
        references): the paper's times are the denominator as published."""
        if reference.source != "calibrated":
            return None
        return self.to_record.id, {self.to_record.script: self.to_record.code()}

    def _enough_pairs(self, conf: Confirmation, reference: Reference) -> bool:
        """The confirmation's stopping rule: the interval from the pairs so far is narrow enough
        (`scoring.need_another_pair`), or a candidate run already failed (it scores 0 anyway)."""
        if not all(conf.candidate_valid):
            return True
        if len(conf.ratios) < 2:
            return False
        try:
            est = confirmation_estimate(conf, reference, self.track.min_speedup)
        except ValueError:
            return False  # record i+1 was not faster in some round: no interval yet
        return not need_another_pair(
            est,
            target_width=CONFIRM_TARGET_WIDTH,
            max_pairs=self.cfg.confirm_runs,
            confidence=CONFIRM_CONFIDENCE,
        )


def evaluate(cfg: EvalConfig, on_event: EventSink = ignore) -> RunInfo:
    return Evaluation(cfg, on_event).run()
