"""Reference times measured on this machine, cached by a machine fingerprint.

Records are run in interleaved rounds (A B C, A B C, ...), as speedrun contributors compare
a candidate with the previous record: slow drifts of the machine's speed hit every record of
a round alike, so the ratio of two records within a round is steadier than either time.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import statistics
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from harness import paths
from harness.data.tracks import run_threads
from harness.errors import MachineBusy, SpeedrunError
from harness.eval.measure import BUSY_ADVICE, MeasureSpec, measure_steady
from harness.events import Event, EventSink, ignore
from harness.execution.base import Executor
from harness.fsutil import locked, write_text_atomic
from harness.machine import MachineInfo, this_machine
from harness.manifests.tracks import Record, Track
from harness.scoring import paired_ratios
from harness.search.workspace import write_files

#: The slowest of a record's calibration runs may take this many times the fastest: quiet 2-core
#: machines scatter identical runs by about ±12% (1.27x), busy ones by 5-20x.
MAX_SPREAD = 1.35


class RecordTiming(BaseModel):
    record_id: str
    code_sha256: str
    times_ms: list[float] = Field(default_factory=list)
    steps: list[int | None] = Field(default_factory=list)
    val_loss: list[float | None] = Field(default_factory=list)
    #: Per run: the harness's wall time minus the printed train_time (start-up, validation,
    #: saving): what a candidate of this record's task may leave untimed (`ClockCheck`).
    untimed_s: list[float] = Field(default_factory=list)
    measured_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def settled(self) -> bool:
        """Measured, and its runs agree within `MAX_SPREAD` (a busy machine scatters them)."""
        return bool(self.times_ms) and max(self.times_ms) <= MAX_SPREAD * min(self.times_ms)

    @property
    def median_untimed_s(self) -> float | None:
        return statistics.median(self.untimed_s) if self.untimed_s else None

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.times_ms), max(self.times_ms))


class Calibration(BaseModel):
    schema_version: int = 1
    track: str
    machine: MachineInfo
    #: The executor's `calibration_key`: its name and any setting that changes run times.
    executor: str
    target_val_loss: float
    val_tokens: int
    records: dict[str, RecordTiming] = Field(default_factory=dict)

    def has(self, record: Record) -> bool:
        got = self.records.get(record.id)
        return got is not None and got.settled and got.code_sha256 == code_sha256(record)

    def ratio(self, numerator: str, denominator: str) -> float:
        """Median of the paired (same-round) ratios of two records' times."""
        a, b = self.records[numerator], self.records[denominator]
        ratios = paired_ratios(a.times_ms, b.times_ms)
        return statistics.median(ratios) if ratios else a.median_ms / b.median_ms


def code_sha256(record: Record) -> str:
    return hashlib.sha256(record.code().encode()).hexdigest()


def calibration_path(track: Track, executor: str, target_val_loss: float) -> Path:
    """`executor` is an executor's `calibration_key` (`local`, `docker`, `docker-cpuset0`, ...)."""
    fp = this_machine().fingerprint
    # CPU tracks run as many threads as OMP_NUM_THREADS allows (it reaches the candidate), and
    # a time measured with one thread says nothing about a run with two.
    threads = run_threads(track)
    suffix = f"-omp{threads}" if threads else ""
    return paths.cache_dir() / "calibration" / track.name / f"{fp}-{executor}-{target_val_loss:g}{suffix}.json"


def calibration_runs_dir(track: Track, executor: str, target_val_loss: float) -> Path:
    """Where the calibration runs of one calibration file keep their workspaces and logs."""
    path = calibration_path(track, executor, target_val_loss)
    return path.parent.parent / "runs" / track.name / path.stem


#: Under a run directory: the logs of the reference runs its times come from, one per record.
REFERENCES_DIR = "references"
#: A reference log longer than this is not copied (the records' own logs are a few kB).
MAX_REFERENCE_LOG_BYTES = 8 << 20


def keep_references(
    track: Track, executor: str, target_val_loss: float, records: list[Record], run_dir: Path, *, logs: bool
) -> None:
    """Keep records i and i+1 with the run: each one's script in `references/<record>/` and,
    with `logs`, its last calibration log as `references/<record>.log`.

    A viewer then shows the run against the records it was measured against, on any machine:
    the manifests may have changed since (or, for a fetched track, be absent), and the
    calibration's logs live in this user's cache, overwritten by the next calibration.
    """
    work = calibration_runs_dir(track, executor, target_val_loss)
    out = run_dir / REFERENCES_DIR
    for rec in records:
        write_files(out / rec.id, {rec.script: rec.code()})
        if not logs:
            continue
        src = work / rec.id / "run.log"
        try:
            info = src.lstat()
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_REFERENCE_LOG_BYTES:
            shutil.copyfile(src, out / f"{rec.id}.log", follow_symlinks=False)


def load_calibration(track: Track, executor: str, target_val_loss: float) -> Calibration:
    path = calibration_path(track, executor, target_val_loss)
    if path.is_file():
        try:
            return Calibration.model_validate_json(path.read_text())
        except ValueError:
            pass  # an unreadable cache is re-measured, not trusted
    return Calibration(
        track=track.name,
        machine=this_machine(),
        executor=executor,
        target_val_loss=target_val_loss,
        val_tokens=track.val_tokens,
    )


def save_calibration(track: Track, cal: Calibration, only: Iterable[str] | None = None) -> Path:
    """Write `cal`; with `only`, write just those records into what is on disk now.

    Two calibrations of different records on one machine (one per core, say) share the
    file: each merges its own records under a lock instead of overwriting the other's.
    """
    path = calibration_path(track, cal.executor, cal.target_val_loss)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden, as the data cache's lock: the directory lists the calibrations and nothing else.
    with locked(path.parent / f".{path.stem}.lock"):
        out = cal
        if only is not None:
            on_disk = load_calibration(track, cal.executor, cal.target_val_loss)
            on_disk.records.update({rid: cal.records[rid] for rid in only})
            out = on_disk
        write_text_atomic(path, out.model_dump_json(indent=2))
    return path


def calibrate(
    track: Track,
    records: list[Record],
    *,
    runs: int,
    executor: Executor,
    spec: MeasureSpec,
    on_event: EventSink = ignore,
) -> Calibration:
    """Measure `records` `runs` times each in interleaved rounds; save after every run."""
    cal = load_calibration(track, executor.calibration_key, spec.target_val_loss)
    for rec in records:
        cal.records[rec.id] = RecordTiming(record_id=rec.id, code_sha256=code_sha256(rec))
    # One work area per calibration file: a docker and a local calibration of the same record
    # (or two thread counts) may run at once and must not share a workspace.
    work = calibration_runs_dir(track, executor.calibration_key, spec.target_val_loss)
    total = runs * len(records)
    done = 0
    for rnd in range(runs):
        for rec in records:
            on_event(
                Event(
                    "calibration_run",
                    f"{rec.id} run {rnd + 1}/{runs}",
                    data={"record": rec.id, "done": done, "total": total},
                )
            )
            result = measure_steady(
                {rec.script: rec.code()}, work / rec.id, spec, executor, f"record {rec.id}", emit=on_event
            )
            if not result.valid or result.train_time_ms is None:
                raise SpeedrunError(
                    f"calibration run of record {rec.id} did not reach the target "
                    f"({result.error or '; '.join(result.rule_violations) or f'val_loss {result.val_loss}'}); "
                    f"see {work / rec.id / 'run.log'}"
                )
            timing = cal.records[rec.id]
            timing.times_ms.append(result.train_time_ms)
            timing.steps.append(result.step)
            timing.val_loss.append(result.val_loss)
            if result.untimed_s is not None:
                timing.untimed_s.append(result.untimed_s)
            done += 1
            save_calibration(track, cal, only=[r.id for r in records])
            on_event(
                Event(
                    "calibration_run",
                    f"{rec.id}: {result.train_time_ms / 1000:.1f} s",
                    data={"record": rec.id, "done": done, "total": total, "time_ms": result.train_time_ms},
                )
            )
    unsettled = [(r, cal.records[r.id]) for r in records if not cal.records[r.id].settled]
    if unsettled:
        rec, timing = unsettled[0]
        lo, hi = timing.spread
        raise MachineBusy(
            f"the machine is too busy to time runs: record {rec.id} took {lo / 1000:.1f}-{hi / 1000:.1f} s "
            f"in {len(timing.times_ms)} runs (more than {MAX_SPREAD:.2f}x apart, so they do not count); "
            f"{BUSY_ADVICE}"
        )
    return cal
