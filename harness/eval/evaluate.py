"""One evaluation: a model and a scaffold on one task, from data and references to the score.

    data -> reference times -> search (engine) -> confirmation -> FSR -> run.json + leaderboard

Re-running the same evaluation resumes it: finished nodes, reference times and confirmation
runs are read back, never redone.
"""

from __future__ import annotations

import hashlib
import platform
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

import harness
from harness.coder.prompts import hints_for, parse_hint_levels
from harness.confine import read_bounded
from harness.data.tracks import TrackData, ensure_data, run_env
from harness.errors import ConfigError
from harness.eval import calibration
from harness.eval.measure import MeasureSpec, measure
from harness.events import Event, EventSink, ignore
from harness.execution import get_executor
from harness.execution.base import Executor
from harness.machine import MachineInfo, this_machine
from harness.manifests.tracks import Record, Task, Track, get_task, load_track
from harness.models import Usage, get_model
from harness.scoring import fsr, fsr_from_ratios, paired_ratios
from harness.search import get_scaffold
from harness.search.budget import Budget
from harness.search.engine import Engine, EngineConfig, Schedule, python_command, spent
from harness.search.journal import Journal
from harness.search.workspace import MAX_SOURCE_BYTES, node_code

RUN_JSON = "run.json"


class EvalConfig(BaseModel):
    """Everything that defines an evaluation; recorded in run.json."""

    task: str
    model: str
    model_args: dict[str, Any] = Field(default_factory=dict)
    scaffold: str = "flat"
    scaffold_args: dict[str, Any] = Field(default_factory=dict)
    hints: str = "pseudocode"
    seed: int = 0
    executor: str = "local"
    executor_args: dict[str, Any] = Field(default_factory=dict)
    max_parallel: int = 1
    schedule: Schedule = "async"
    results_dir: Path = Path("results")
    data_dir: Path | None = None
    calibration_runs: int = 3
    confirm_runs: int = 2
    target_val_loss: float | None = None
    time_limit_s: float | None = None
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    gpus: str | None = None
    #: After each run, one more model call writes a short analysis that child prompts see.
    analyze: bool = False
    #: The script the search starts from instead of record i's (cumulative mode: the agent's
    #: own best solution of the previous task). FSR is still measured against record i.
    start_from: Path | None = None

    def run_id(self) -> str:
        """Named by what identifies a result row, so the same command finds its own run again."""
        parts = [self.task, self.model, self.scaffold, self.hints, f"s{self.seed}"]
        if self.target_val_loss is not None:
            parts.append(f"target{self.target_val_loss:g}")
        if self.analyze:
            parts.append("analyze")
        if self.start_from is not None:
            parts.append("from-" + hashlib.sha256(str(self.start_from).encode()).hexdigest()[:8])
        return re.sub(r"[^A-Za-z0-9._+-]+", "-", "__".join(parts))

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the recorded one (the node budget may grow)."""
        out = self.model_dump(
            include={"task", "model", "model_args", "scaffold", "scaffold_args", "hints", "seed", "target_val_loss"}
            | {"analyze", "start_from"},
            mode="json",
        )
        out["scaffold_args"] = {k: v for k, v in out["scaffold_args"].items() if k != "nodes"}
        out["model_args"] = {k: v for k, v in out["model_args"].items() if k not in ("max_connections", "base_url")}
        return out


class Reference(BaseModel):
    """Record i's and record i+1's times, and where they come from."""

    source: Literal["calibrated", "paper"]
    from_record: str
    to_record: str
    t_ref_ms: float
    t_next_ms: float
    next_ratio: float
    runs: int = 0
    t_ref_spread_ms: tuple[float, float] | None = None
    t_next_spread_ms: tuple[float, float] | None = None


class Confirmation(BaseModel):
    """The best node re-run side by side with record i."""

    node: int
    candidate_ms: list[float] = Field(default_factory=list)
    reference_ms: list[float] = Field(default_factory=list)
    candidate_valid: list[bool] = Field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return paired_ratios(self.candidate_ms, self.reference_ms)


class TaskScore(BaseModel):
    task: str
    fsr: float
    best_node: int | None
    best_time_ms: float | None
    candidate_ratio: float | None
    reference: Reference
    confirmation: Confirmation | None = None
    nodes: int
    valid_nodes: int
    note: str = ""


class RunInfo(BaseModel):
    schema_version: int = 1
    run_id: str
    config: EvalConfig
    track: str
    status: Literal["running", "finished", "stopped", "failed"] = "running"
    status_detail: str = ""
    sandboxed: bool = False
    versions: dict[str, str] = Field(default_factory=dict)
    machine: MachineInfo
    model_settings: dict[str, Any] = Field(default_factory=dict)
    scaffold_params: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    usage: Usage = Field(default_factory=Usage)
    score: TaskScore | None = None


def read_run(run_dir: Path) -> RunInfo | None:
    path = run_dir / RUN_JSON
    return RunInfo.model_validate_json(path.read_text()) if path.is_file() else None


def write_run(run_dir: Path, info: RunInfo) -> None:
    info.updated_at = datetime.now(UTC)
    tmp = run_dir / (RUN_JSON + ".tmp")
    tmp.write_text(info.model_dump_json(indent=2))
    tmp.replace(run_dir / RUN_JSON)


#: Training processes when `--gpus` does not name a number: the benchmark's node has eight GPUs.
#: Not the GPUs this machine happens to have, because the records fix their global batch as
#: per-GPU batch x world size, so a different process count trains a different run.
DEFAULT_GPUS = 8
NPROC_PLACEHOLDER = "{nproc_per_node}"


def gpu_count(gpus: str | None) -> int:
    """`--gpus` as a process count: unset or `all` -> 8, `N` -> N, `0,1,2,3` (or `device=...`) -> 4."""
    value = (gpus or "").strip()
    if value in ("", "all"):
        return DEFAULT_GPUS
    if value == "none":
        raise ConfigError("--gpus none leaves no GPU for the track's command; use all, a count or device ids")
    if value.isdigit():
        count = int(value)
    else:
        ids = value.removeprefix("device=").strip("\"'")
        if not re.fullmatch(r"[\w-]+(,[\w-]+)*", ids):
            raise ConfigError(f"cannot read --gpus {gpus!r}; use all, a count, or device ids like 0,1")
        count = len(ids.split(","))
    if count < 1:
        raise ConfigError(f"--gpus {gpus!r} leaves no GPU for the track's command; use all, a count or ids")
    return count


def track_command(track: Track, gpus: str | None, *, local: bool) -> list[str]:
    """The track's command with `{nproc_per_node}` filled in from `--gpus`."""
    command = list(track.command)
    if any(NPROC_PLACEHOLDER in part for part in command):
        n = str(gpu_count(gpus))
        command = [part.replace(NPROC_PLACEHOLDER, n) for part in command]
    return python_command(command, local=local)


def track_executor(
    track: Track, name: str, options: dict[str, Any], *, image: str | None = None, gpus: str | None = None
) -> Executor:
    """The executor `name` for runs of `track`; a docker run uses `image` (a record's own) or the track's.

    Precedence: explicit options (`--executor-arg`), then `--gpus`, then the track's defaults.
    """
    args: dict[str, Any] = dict(track.executors.get(name, {}))
    if name == "docker":
        args["image"] = image or track.image
        if gpus:
            args["gpus"] = gpus
    args.update(options)
    return get_executor(name, **args)


def track_env(track: Track, data: TrackData, gpus: str | None, *, local: bool, **kw: Any) -> dict[str, str]:
    """`run_env`, plus CUDA_VISIBLE_DEVICES on the local executor when `--gpus` names device ids
    (a container sees only the requested devices; a local process would otherwise see all)."""
    env = run_env(track, data, **kw)
    value = (gpus or "").strip().removeprefix("device=")
    if local and value and value != "all" and not value.isdigit():
        env["CUDA_VISIBLE_DEVICES"] = value
    return env


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
            from harness.manifests.fetch import require_fetched

            require_fetched(self.track.name)  # says to run `speedrun records fetch`, not "no hint"
        hints_for(self.task, self.hint_levels)  # a missing hint level fails now, not mid-run
        self.from_record = self.track.record(self.task.from_record)
        self.to_record = self.track.record(self.task.to_record)
        self.model = get_model(cfg.model, cfg.model_args)
        self.model.check_ready()  # a missing key fails before any training run
        self.scaffold = get_scaffold(cfg.scaffold, cfg.scaffold_args)
        self.run_dir = cfg.results_dir / cfg.run_id()
        self.time_limit_s = cfg.time_limit_s or self.track.time_limit_s
        if cfg.start_from is not None and not cfg.start_from.is_file():
            raise ConfigError(f"start file {cfg.start_from} not found")

    def start_code(self) -> str:
        """The script the search starts from: record i's, or `start_from`."""
        if self.cfg.start_from is None:
            return self.from_record.code()
        data = read_bounded(self.cfg.start_from, MAX_SOURCE_BYTES)
        if data is None:
            raise ConfigError(f"start file {self.cfg.start_from} is not a regular file of at most 1 MiB")
        return data.decode("utf-8", errors="replace")

    def executor(self) -> Executor:
        return track_executor(
            self.track, self.cfg.executor, self.cfg.executor_args, image=self.from_record.image, gpus=self.cfg.gpus
        )

    def measure_spec(self, data: TrackData) -> MeasureSpec:
        return MeasureSpec(
            command=track_command(self.track, self.cfg.gpus, local=self.cfg.executor == "local"),
            env=track_env(
                self.track,
                data,
                self.cfg.gpus,
                local=self.cfg.executor == "local",
                seed=self.cfg.seed,
                target_val_loss=self.target,
            ),
            time_limit_s=self.time_limit_s,
            target_val_loss=self.target,
            data_dir=data.data_dir,
            gpus=self.cfg.gpus,
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
            "model": self.cfg.model,
            "scaffold": self.scaffold.describe(),
            "hints": self.hint_levels,
            "run_dir": str(self.run_dir),
            "run": self.executor().describe(run),
        }

    def reference_plan(self) -> dict[str, Any]:
        """Which reference times a run would use, measuring nothing: a calibration of this machine
        when it has both records, else the paper's times (paper tracks) or a calibration to come."""
        a, b = self.from_record, self.to_record
        key = self.executor().calibration_key
        cal = calibration.load_calibration(self.track, key, self.target)
        if cal.has(a) and cal.has(b):
            return {
                "source": "calibrated",
                "file": str(calibration.calibration_path(self.track, key, self.target)),
                "time_ms": {a.id: cal.records[a.id].median_ms, b.id: cal.records[b.id].median_ms},
            }
        if self.track.reference_times == "paper":
            times = {r.id: r.reference.time_ms if r.reference else None for r in (a, b)}
            return {"source": "paper", "time_ms": times}
        return {"source": "calibrate", "runs_per_record": self.cfg.calibration_runs}

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
                    budget=Budget(self.cfg.max_cost_usd, self.cfg.max_tokens, spent(self.run_dir)),
                    analyze=self.cfg.analyze,
                ),
                model=self.model,
                scaffold=self.scaffold,
                executor=executor,
                run_dir=self.run_dir,
                on_event=self.emit,
            )
            status = engine.run()
            info.usage = engine.usage()
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
        a, b = self.from_record, self.to_record
        cal = calibration.load_calibration(self.track, executor.calibration_key, self.target)
        if self.track.reference_times == "paper" and not (cal.has(a) and cal.has(b)):
            self.emit(
                Event(
                    "info",
                    f"reference times: the paper's re-measurement on 8xH100; `speedrun calibrate --track "
                    f"{self.track.name} --records {a.index},{b.index}` measures them on this machine instead",
                )
            )
            return self._paper_reference(a, b)
        missing = [r for r in (a, b) if not cal.has(r)]
        if missing:
            self.emit(
                Event(
                    "phase",
                    f"calibrating {', '.join(r.id for r in missing)} on this machine "
                    f"({self.cfg.calibration_runs} runs each; cached for later evaluations)",
                )
            )
            cal = calibration.calibrate(
                self.track,
                missing if len(missing) == 1 else [a, b],
                runs=self.cfg.calibration_runs,
                executor=executor,
                spec=spec,
                on_event=self.emit,
            )
        else:
            self.emit(
                Event(
                    "info",
                    f"reference times from the calibration of this machine "
                    f"({calibration.calibration_path(self.track, executor.calibration_key, self.target)})",
                )
            )
        ta, tb = cal.records[a.id], cal.records[b.id]
        ratio = cal.ratio(b.id, a.id)
        if ratio >= 1 and self.cfg.target_val_loss is not None:
            # At a loosened (smoke) target the chain's order need not hold; the run still
            # exercises every part, and the score says FSR is undefined.
            self.emit(
                Event(
                    "warning",
                    f"at target {self.target} record {b.id} is not faster than {a.id} here; "
                    "FSR is undefined for this run",
                )
            )
        elif ratio >= 1:
            raise ConfigError(
                f"on this machine record {b.id} ({tb.median_ms:.0f} ms) is not faster than {a.id} "
                f"({ta.median_ms:.0f} ms); re-run `speedrun calibrate --track {self.track.name}` with more --runs"
            )
        return Reference(
            source="calibrated",
            from_record=a.id,
            to_record=b.id,
            t_ref_ms=ta.median_ms,
            t_next_ms=tb.median_ms,
            next_ratio=ratio,
            runs=len(ta.times_ms),
            t_ref_spread_ms=ta.spread,
            t_next_spread_ms=tb.spread,
        )

    def _paper_reference(self, a: Record, b: Record) -> Reference:
        if a.reference is None or b.reference is None:
            raise ConfigError(f"records {a.id} and {b.id} need reference times in their manifests")
        return Reference(
            source="paper",
            from_record=a.id,
            to_record=b.id,
            t_ref_ms=a.reference.time_ms,
            t_next_ms=b.reference.time_ms,
            next_ratio=b.reference.time_ms / a.reference.time_ms,
        )

    def score(self, journal: Journal, ref: Reference, executor: Executor, spec: MeasureSpec) -> TaskScore:
        best = journal.best()
        nodes, valid = len(journal.nodes), len(journal.valid())
        common = {"task": self.task.id, "reference": ref, "nodes": nodes, "valid_nodes": valid}
        if ref.next_ratio >= 1:
            return TaskScore(
                fsr=0.0,
                best_node=best.id if best else None,
                best_time_ms=best.time_ms if best else None,
                candidate_ratio=None,
                note=f"undefined: record {ref.to_record} is not faster than {ref.from_record} at this target",
                **common,
            )
        if best is None or best.time_ms is None:
            return TaskScore(
                fsr=0.0,
                best_node=None,
                best_time_ms=None,
                candidate_ratio=None,
                note="no valid node",
                **common,
            )
        if self.node_files(best.id) == self.record_files():
            # Record i's own code cannot be faster than record i: re-measuring it only costs time.
            return TaskScore(
                fsr=0.0,
                best_node=best.id,
                best_time_ms=best.time_ms,
                candidate_ratio=best.time_ms / ref.t_ref_ms,
                note=f"the best node is record {self.from_record.id} unchanged",
                **common,
            )
        if ref.source == "paper" or self.cfg.confirm_runs <= 0:
            value = fsr(ref.t_ref_ms, ref.t_next_ms, best.time_ms, self.track.min_speedup)
            return TaskScore(
                fsr=value,
                best_node=best.id,
                best_time_ms=best.time_ms,
                candidate_ratio=best.time_ms / ref.t_ref_ms,
                note="from the node's own run",
                **common,
            )
        if best.time_ms >= ref.t_ref_ms * 1.25:
            # Far slower than the reference: no amount of re-measuring makes it a speed-up.
            return TaskScore(
                fsr=0.0,
                best_node=best.id,
                best_time_ms=best.time_ms,
                candidate_ratio=best.time_ms / ref.t_ref_ms,
                note="slower than record i",
                **common,
            )
        conf = self.confirm(best.id, executor, spec)
        ratio = statistics.median(conf.ratios) if all(conf.candidate_valid) and conf.ratios else None
        note = "" if ratio is not None else "the best node did not reach the target in every confirmation run"
        if ratio is not None and ratio >= 1.0 - self.track.min_speedup:
            note = f"not faster than record i beyond the track's noise margin ({self.track.min_speedup:.0%})"
        return TaskScore(
            fsr=fsr_from_ratios(ratio, ref.next_ratio, self.track.min_speedup),
            best_node=best.id,
            best_time_ms=best.time_ms,
            candidate_ratio=ratio,
            confirmation=conf,
            note=note,
            **common,
        )

    def node_files(self, node_id: int) -> dict[str, str]:
        return node_code(self.run_dir / "nodes" / str(node_id))

    def record_files(self) -> dict[str, str]:
        """Record i as a workspace: its one script."""
        return {self.from_record.script: self.from_record.code()}

    def confirm(self, node_id: int, executor: Executor, spec: MeasureSpec) -> Confirmation:
        """Re-run the best node and record i alternately; kept in confirm.json across resumes."""
        path = self.run_dir / "confirm.json"
        conf = Confirmation(node=node_id)
        if path.is_file():
            old = Confirmation.model_validate_json(path.read_text())
            if old.node == node_id:
                conf = old
        cand_files = self.node_files(node_id)
        ref_files = self.record_files()
        while len(conf.candidate_ms) < self.cfg.confirm_runs:
            k = len(conf.candidate_ms)
            self.emit(
                Event(
                    "phase",
                    f"confirming node {node_id} against {self.from_record.id} (pair {k + 1}/{self.cfg.confirm_runs})",
                )
            )
            r = measure(ref_files, self.run_dir / "confirm" / f"{k}-reference", spec, executor, "confirm/ref")
            c = measure(cand_files, self.run_dir / "confirm" / f"{k}-candidate", spec, executor, "confirm/cand")
            if not r.valid or r.train_time_ms is None:
                raise ConfigError(
                    f"record {self.from_record.id} did not reach the target in a confirmation run: "
                    f"{r.error or r.val_loss}"
                )
            conf.reference_ms.append(r.train_time_ms)
            conf.candidate_ms.append(c.train_time_ms if c.valid and c.train_time_ms else float("inf"))
            conf.candidate_valid.append(c.valid)
            path.write_text(conf.model_dump_json(indent=2))
            self.emit(
                Event(
                    "info",
                    f"pair {k + 1}: record {r.train_time_ms / 1000:.1f} s, "
                    f"node {node_id} {(c.train_time_ms or 0) / 1000:.1f} s",
                )
            )
        return conf


def evaluate(cfg: EvalConfig, on_event: EventSink = ignore) -> RunInfo:
    return Evaluation(cfg, on_event).run()
