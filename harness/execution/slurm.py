"""Run candidates as Slurm jobs through submitit, for evaluations spread over a cluster.

One candidate run = one batch job. Inside it the job runs the *local executor's* code path
(own process group, wall-clock limit, allow-listed environment, the same sandbox once local
runs have one), optionally behind Slurm's OCI `--container` or pyxis' `--container-image`, so
a run's limits and log are those of a run on one machine. The results directory must be on a
filesystem that the nodes share.

What the harness trusts: nothing the job leaves but a JSON outcome, read through pydantic.
submitit's folder (its pickles and logs) lies next to each run's log, outside the workspace,
and the harness never unpickles a job's result, so a candidate that reaches the folder can at
worst misreport its own run, never run code in the harness.

Surviving the cluster: a job preempted with submitit's signal is requeued and re-runs the
candidate from its start; a job that ends without an outcome (cancelled, preempted, its node
lost) is submitted again, `retries` times. Every attempt is recorded in `jobs.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shlex
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import paths
from harness.errors import ConfigError
from harness.execution.base import ExecResult, Executor, LineCallback, RunSpec
from harness.execution.gpus import GpuSpec
from harness.execution.registry import register
from harness.execution.slurm_job import CandidateJob, JobOutcome, probe_machine
from harness.execution.slurm_jobs import JOBS, JobAttempt, JobsRecord, read_jobs
from harness.execution.slurm_settings import (
    ACTIVE,
    REQUEUE_GRACE_S,
    RETRY,
    SETUP_HINT,
    TIME_MARGIN_MIN,
    export_list,
    mem_option,
    sbatch_options,
    settings_from,
    submit_job,
)
from harness.machine import MachineInfo

# ---- the harness's side ---------------------------------------------------------------------

_WATCH_LOCK = threading.Lock()
_JOB_CLASSES: dict[float, Any] = {}


def _job_class(poll_s: float) -> Any:
    """submitit's SlurmJob with a watcher that asks sacct every `poll_s` (its own waits up to 10 min)."""
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob

    if poll_s not in _JOB_CLASSES:
        watcher = SlurmInfoWatcher(delay_s=max(1, math.ceil(poll_s)))
        _JOB_CLASSES[poll_s] = type("SpeedrunSlurmJob", (SlurmJob,), {"watcher": watcher})
    return _JOB_CLASSES[poll_s]


@register
class SlurmExecutor(Executor):
    name = "slurm"
    sandboxed = False

    def __init__(self, **options: Any) -> None:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise ConfigError(f"the slurm executor needs submitit: {SETUP_HINT}") from None
        self.settings = settings_from(options)
        self.extra = sbatch_options(self.settings.sbatch)
        if self.settings.container and self.settings.container_image:
            raise ConfigError("slurm: set container (an OCI bundle) or container_image (pyxis), not both")
        if self.settings.max_jobs is not None:
            JOBS.set(self.settings.max_jobs)
        self._machine: MachineInfo | None = None

    # -- what a job is ---------------------------------------------------------------------------

    def folder(self, spec: RunSpec) -> Path:
        """submitit's folder for a run: beside its log, outside the workspace the candidate writes."""
        folder = spec.log_path.parent / "slurm"
        workspace = spec.workspace.resolve()
        if folder.resolve().is_relative_to(workspace):
            raise ConfigError(f"the run's log {spec.log_path} lies inside its workspace; keep it outside")
        return folder

    def gpus(self, spec: RunSpec) -> int | None:
        """GPUs the job asks for: the run's (slot) share, else the settings' gpus_per_node."""
        share = GpuSpec.parse(spec.gpus)
        if share is None:
            return self.settings.gpus_per_node
        if share.is_all:
            if self.settings.gpus_per_node is None:
                raise ConfigError("--gpus all means nothing to Slurm; give a count (--gpus 8) or gpus_per_node")
            return self.settings.gpus_per_node
        return share.size

    def time_limit(self, spec: RunSpec) -> int | str:
        return self.settings.time or math.ceil(spec.time_limit_s / 60) + TIME_MARGIN_MIN

    def parameters(self, spec: RunSpec) -> dict[str, Any]:
        """submitit's `update_parameters` for the run's job (its sbatch options)."""
        s = self.settings
        params: dict[str, Any] = {
            "job_name": "speedrun-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.label).strip("-.")[:60] or "run"),
            "time": self.time_limit(spec),
            "nodes": 1,
            "ntasks_per_node": 1,
            # Python runs in the batch step itself, so that a container's `srun` step has the
            # job's resources to itself.
            "use_srun": False,
            "stderr_to_stdout": True,
        }
        optional = {
            "partition": s.partition,
            "account": s.account,
            "qos": s.qos,
            "gpus_per_node": self.gpus(spec),
            "cpus_per_task": s.cpus_per_task,
            "mem": mem_option(s.mem_gb),
            "constraint": s.constraint,
            "exclude": s.exclude,
        }
        params.update({k: v for k, v in optional.items() if v})
        if s.setup:
            params["setup"] = list(s.setup)
        # The preemption signal reaches the batch step, where the job's Python runs.
        extra: dict[str, Any] = {"signal": "B:USR2@90", "export": export_list(), "requeue": True}
        extra.update(self.extra)
        params["additional_parameters"] = extra
        return params

    def python(self) -> str:
        # exec: Python becomes the batch shell, so the signal Slurm sends it (`--signal=B:USR2`,
        # preemption) reaches submitit's handler instead of killing a bash that waits on it.
        return "exec " + (self.settings.python or shlex.quote(sys.executable))

    def sbatch_script(self, spec: RunSpec) -> str:
        """The batch script submitit writes for the run, exactly (for `--dry-run`)."""
        from submitit.slurm.slurm import _make_sbatch_string

        folder = self.folder(spec)
        params = self.parameters(spec)
        command = " ".join([self.python(), "-u -m submitit.core._submit", shlex.quote(str(folder))])
        return str(_make_sbatch_string(command=command, folder=folder, **params))

    def wrap(self, spec: RunSpec) -> list[str]:
        """What the candidate's command runs behind inside the job: nothing, or a container step."""
        s = self.settings
        if s.container:
            # srun's environment is the candidate's (already allow-listed): pass it all in. The
            # OCI bundle sets the working directory, so the step moves to the workspace itself.
            step = ["srun", "--ntasks=1", "--export=ALL", f"--container={s.container}"]
            return [*step, "/bin/sh", "-c", 'cd "$0" && exec "$@"', str(spec.workspace.resolve())]
        if s.container_image:
            mounts = [f"{spec.workspace.resolve()}:{spec.workspace.resolve()}"]
            if spec.data_dir is not None:
                mounts.append(f"{spec.data_dir.resolve()}:{spec.data_dir.resolve()}:ro")
            mounts += s.container_mounts
            return [
                "srun",
                "--ntasks=1",
                "--export=ALL",
                f"--container-image={s.container_image}",
                f"--container-mounts={','.join(mounts)}",
                f"--container-workdir={spec.workspace.resolve()}",
                "--no-container-mount-home",
            ]
        return []

    def describe(self, spec: RunSpec) -> dict[str, Any]:
        return {
            **super().describe(spec),
            "slurm": self.settings.model_dump(exclude_defaults=True),
            "in_job_command": [*self.wrap(spec), *spec.command],
            "sbatch": self.sbatch_script(spec),
        }

    # -- the compute node's fingerprint ------------------------------------------------------------

    @property
    def calibration_key(self) -> str:
        """`slurm-<compute node's fingerprint>`: reference times are those of the nodes that run the jobs."""
        return f"slurm-{self.machine().fingerprint}" if self.settings.probe else "slurm-unprobed"

    def machine(self) -> MachineInfo:
        """The machine a job of these settings runs on, asked once by a short probe job (then cached)."""
        if self._machine is not None:
            return self._machine
        s = self.settings
        if not s.probe:
            from harness.machine import this_machine

            return this_machine().model_copy(update={"hostname": "(compute node not probed)"})
        key = json.dumps([s.partition, s.account, s.qos, s.constraint, s.exclude, s.gpus_per_node, s.setup])
        cache = paths.cache_dir() / "slurm" / f"machine-{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
        if cache.is_file():
            with contextlib.suppress(ValueError):
                self._machine = MachineInfo.model_validate_json(cache.read_text())
                return self._machine
        cache.parent.mkdir(parents=True, exist_ok=True)
        out = cache.parent / f"probe-{os.getpid()}-{threading.get_ident()}.json"
        spec = RunSpec(
            command=["true"],
            workspace=cache.parent / "probe",
            log_path=cache.parent / "probe.log",
            time_limit_s=240.0,
            label="probe",
        )
        executor = self._submitit(cache.parent / "probe-jobs", spec)
        job = submit_job(executor, probe_machine, out)
        try:
            while not out.is_file():
                state = self._state(job)
                if state not in ACTIVE:
                    raise ConfigError(f"the probe job {job.job_id} ended {state} before saying its machine")
                time.sleep(min(self.settings.poll_s, 1.0))
        except BaseException:
            job.cancel(check=False)
            raise
        self._machine = MachineInfo.model_validate_json(out.read_text())
        out.replace(cache)
        return self._machine

    # -- running -------------------------------------------------------------------------------

    def _submitit(self, folder: Path, spec: RunSpec) -> Any:
        import submitit

        try:
            executor = submitit.SlurmExecutor(folder=folder, python=self.python(), max_num_timeout=3)
        except RuntimeError as exc:  # no srun: not a Slurm login node
            raise ConfigError(f"the slurm executor needs Slurm's commands here: {exc}") from None
        executor.job_class = _job_class(self.settings.poll_s)
        executor.update_parameters(**self.parameters(spec))
        return executor

    def _state(self, job: Any) -> str:
        with _WATCH_LOCK:
            return str(job.watcher.get_state(job.job_id, mode="standard")).split()[0].upper()

    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        folder = self.folder(spec)
        folder.mkdir(parents=True, exist_ok=True)
        record = read_jobs(folder) or JobsRecord(label=spec.label)
        redone: list[str] = []
        with JOBS.slot():
            for attempt in range(self.settings.retries + 1):
                outcome, state = self._attempt(spec, folder, record, on_line)
                if outcome is not None:
                    for note in redone:  # each attempt starts the log anew: say at its end what came before
                        _note(spec.log_path, note)
                    return outcome.result.model_copy(update={"executor": self.name, "sandboxed": self.sandboxed})
                job_id = record.jobs[-1].job_id
                if state in RETRY and attempt < self.settings.retries:
                    redone.append(f"slurm job {job_id} ended {state} before the run finished; the run was done again")
                    continue
                return ExecResult(
                    exit_code=None,
                    timed_out=state in ("TIMEOUT", "DEADLINE"),
                    oom=state == "OUT_OF_MEMORY",
                    error=f"slurm job {job_id} ended {state}" + _job_log_tail(folder, job_id),
                    log_path=spec.log_path,
                    executor=self.name,
                    sandboxed=self.sandboxed,
                )
        raise AssertionError("unreachable")

    def _attempt(
        self, spec: RunSpec, folder: Path, record: JobsRecord, on_line: LineCallback | None
    ) -> tuple[JobOutcome | None, str]:
        attempt = f"{len(record.jobs)}-{os.urandom(4).hex()}"
        outcome_path = folder / f"outcome-{attempt}.json"
        submitted = time.time()
        job = submit_job(self._submitit(folder, spec), CandidateJob(), spec, outcome_path, attempt, self.wrap(spec))
        entry = JobAttempt(job_id=str(job.job_id), attempt=attempt, submitted_at=submitted)
        record.jobs.append(entry)
        record.save(folder / "jobs.json")
        seen = 0
        preempted_since: float | None = None
        try:
            while True:
                seen = _follow(spec.log_path, seen, on_line)
                outcome = _read_outcome(outcome_path, attempt)
                if outcome is not None:
                    state = "COMPLETED"
                    break
                state = self._state(job)
                if state == "PREEMPTED":
                    preempted_since = preempted_since or time.monotonic()
                    ended = time.monotonic() - preempted_since > REQUEUE_GRACE_S
                else:
                    preempted_since = None
                    ended = state not in ACTIVE
                if ended:
                    outcome = _read_outcome(outcome_path, attempt)  # written just before the end
                    break
                JOBS.check()
                time.sleep(self.settings.poll_s)
            _follow(spec.log_path, seen, on_line)
        except BaseException:
            job.cancel(check=False)  # Ctrl-C or a harness crash must not leave jobs queued
            entry.state = "CANCELLED"
            record.save(folder / "jobs.json")
            raise
        entry.state = state
        entry.ended_at = time.time()
        if outcome is not None:
            entry.started_at, entry.hostname = outcome.started_at, outcome.hostname
        record.save(folder / "jobs.json")
        return outcome, state


def _read_outcome(path: Path, attempt: str) -> JobOutcome | None:
    if not path.is_file():
        return None
    try:
        outcome = JobOutcome.model_validate_json(path.read_text())
    except ValueError:
        return None
    return outcome if outcome.attempt == attempt else None


def _note(log_path: Path, message: str) -> None:
    with open(log_path, "a") as log:
        log.write(f"\n[speedrun] {message} ({datetime.now(UTC):%H:%M:%S} UTC)\n")


def _job_log_tail(folder: Path, job_id: str, lines: int = 5) -> str:
    path = folder / f"{job_id}_0_log.out"
    if not path.is_file():
        return ""
    tail = [line for line in path.read_text(errors="replace").splitlines() if line.strip()][-lines:]
    return ("; job log: " + " | ".join(tail))[:800] if tail else ""


def _follow(path: Path, offset: int, on_line: LineCallback | None) -> int:
    """Pass on the log lines written since `offset`; returns the new offset (0 again when a
    requeued job started the log anew)."""
    if on_line is None or not path.is_file():
        return offset
    if path.stat().st_size < offset:
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].splitlines():
        on_line(line.decode("utf-8", errors="replace"))
    return offset + end
