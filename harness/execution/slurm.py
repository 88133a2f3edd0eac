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
import signal
import sys
import threading
import time
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import paths
from harness.errors import ConfigError
from harness.execution.base import ExecResult, Executor, LineCallback, RunSpec
from harness.execution.environment import PASSTHROUGH, is_secret
from harness.execution.gpus import GpuSpec
from harness.execution.local import LocalExecutor
from harness.execution.registry import register
from harness.machine import MachineInfo

#: How often the harness looks at a job's log and state (one sacct call serves every job).
POLL_S = 5.0
#: The job's own time limit exceeds the run's by this much, so the in-job limit fires first
#: and the log and outcome are saved before Slurm kills the job.
TIME_MARGIN_MIN = 2
#: A PREEMPTED job that Slurm requeues shows PENDING again; one that stays PREEMPTED this
#: long was not requeued and is submitted again.
REQUEUE_GRACE_S = 60.0
#: Job states from which a job may still run (or run again); anything else has ended.
ACTIVE = frozenset(
    {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "COMPLETING"}
    | {"CONFIGURING", "STAGE_OUT", "SIGNALING", "UNKNOWN", "READY"}
)
#: Endings that say nothing about the candidate: its run is done again (up to `retries`).
RETRY = frozenset({"CANCELLED", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL"})
#: Variables that must not travel from the login node into a job (Slurm sets its own).
NOT_EXPORTED = frozenset({"CUDA_VISIBLE_DEVICES"})
SETUP_HINT = "pip install 'speedrun[slurm]'"


class SlurmSettings(BaseModel):
    """What a cluster user sets: from `--executor-config slurm.toml` and `--executor-arg key=value`."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    #: A job's time limit, minutes or Slurm's `[D-]HH:MM:SS`; default: the run's limit + 2 min.
    time: int | str | None = None
    #: GPUs per job when `--gpus` says none (with `--gpus`, each job asks for its slot's share).
    gpus_per_node: int | None = Field(default=None, ge=0)
    cpus_per_task: int | None = Field(default=None, ge=1)
    mem_gb: float | None = Field(default=None, gt=0)
    constraint: str | None = None
    exclude: str | None = None
    #: More `#SBATCH` options, as on sbatch's command line: `--reservation=x`, `--exclusive`.
    sbatch: list[str] = Field(default_factory=list)
    #: Shell lines the job runs before Python (`module load cuda`, `source venv/bin/activate`).
    setup: list[str] = Field(default_factory=list)
    #: The Python interpreter on the compute nodes (default: the harness's own).
    python: str | None = None
    #: Slurm's own OCI containers: an OCI bundle directory on the nodes (needs oci.conf).
    container: str | None = None
    #: pyxis/enroot: an image (`docker://...`, `.sqsh`) for `srun --container-image`.
    container_image: str | None = None
    #: pyxis: more `--container-mounts` entries (`/scratch:/scratch`).
    container_mounts: list[str] = Field(default_factory=list)
    #: The most jobs this harness keeps queued or running at once, across all its evaluations.
    max_jobs: int | None = Field(default=None, ge=1)
    #: Submissions again of a run whose job ended without an outcome (cancelled, preempted, node lost).
    retries: int = Field(default=1, ge=0)
    poll_s: float = Field(default=POLL_S, gt=0)
    #: `speedrun eval --submit`: the harness's own job's time limit (minutes or `[D-]HH:MM:SS`).
    harness_time: int | str = 24 * 60
    harness_cpus: int = Field(default=2, ge=1)
    #: Ask the cluster (one short job, then cached) which machine runs the jobs, for the
    #: calibration's fingerprint. Dry runs turn it off: they submit nothing.
    probe: bool = True


def load_settings(path: Path) -> dict[str, Any]:
    """An executor config file (TOML): its `[slurm]`/`[docker]` table or its top level, as options."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read --executor-config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--executor-config {path} is not valid TOML: {exc}") from None
    return data


def settings_from(options: dict[str, Any]) -> SlurmSettings:
    try:
        return SlurmSettings.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        known = ", ".join(SlurmSettings.model_fields)
        raise ConfigError(f"slurm setting {where}: {err['msg']} (settings: {known})") from None


def sbatch_options(lines: list[str]) -> dict[str, Any]:
    """`--key=value`, `--key value` and `--flag` (with or without `#SBATCH`) as submitit's extra parameters."""
    out: dict[str, Any] = {}
    for line in lines:
        text = line.strip().removeprefix("#SBATCH").strip()
        m = re.fullmatch(r"--([A-Za-z][\w-]*)(?:[= ](.+))?", text)
        if m is None:
            raise ConfigError(f"slurm sbatch line {line!r}: use long options like --reservation=name or --exclusive")
        key, value = m.group(1), m.group(2)
        out[key.replace("-", "_")] = True if value is None else value.strip().strip("\"'")
    return out


def export_list(environ: dict[str, str] | None = None) -> str:
    """sbatch's `--export`: the allow-listed variables by name, never a key; NONE if there are none.

    sbatch would otherwise copy the harness's whole environment, API keys included, into a
    job whose candidate may read its parent's environment.
    """
    env = os.environ if environ is None else environ
    names = sorted(n for n in (*PASSTHROUGH, "SLURM_CONF") if n in env and n not in NOT_EXPORTED and not is_secret(n))
    return ",".join(names) or "NONE"


# ---- inside the job ---------------------------------------------------------------------------


class JobOutcome(BaseModel):
    """What a job writes for the harness: JSON, so a forged file cannot run code when read."""

    schema_version: int = 1
    attempt: str
    job_id: str | None = None
    hostname: str = ""
    started_at: float = 0.0
    result: ExecResult


class _Terminated(Exception):
    """The job was told to stop (scancel, preemption): its run's end says nothing of the candidate."""


class CandidateJob:
    """The function a job runs (pickled by submitit): the local executor's run of the candidate.

    `checkpoint` makes submitit requeue a job that receives its preemption signal; the requeued
    job runs the candidate again from its start.
    """

    def __call__(self, spec: RunSpec, outcome_path: Path, attempt: str, wrap: list[str]) -> None:
        started = time.time()
        terminated = threading.Event()
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            terminated.set()
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_term)
        env = dict(spec.env)
        if wrap:
            # `srun --container...` needs to know the job it is a step of.
            env.update({k: v for k, v in os.environ.items() if k.startswith("SLURM_")})
        # Slurm picked this job's GPUs and set CUDA_VISIBLE_DEVICES: device ids named on the
        # login node mean nothing here.
        local = spec.model_copy(update={"command": [*wrap, *spec.command], "env": env, "gpus": None})
        result = LocalExecutor().run(local)
        if terminated.is_set():
            raise _Terminated("the job was told to stop while the candidate ran")
        outcome = JobOutcome(
            attempt=attempt,
            job_id=os.environ.get("SLURM_JOB_ID"),
            hostname=os.uname().nodename,
            started_at=started,
            result=result,
        )
        tmp = outcome_path.with_suffix(".tmp")
        tmp.write_text(outcome.model_dump_json())
        tmp.replace(outcome_path)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def probe_machine(out_path: Path) -> None:
    """A job that says which machine runs the jobs (for the calibration's fingerprint)."""
    from harness.machine import this_machine

    out_path.write_text(this_machine().model_dump_json())


def run_harness(argv: list[str]) -> int:
    """`speedrun eval --submit`: the harness itself as a job; its output goes to the job's log."""
    import subprocess

    code = subprocess.call([sys.executable, "-c", "from harness.cli.app import app; app()", *argv])
    if code not in (0, 3):  # 3: stopped by a budget, which a re-run resumes
        raise RuntimeError(f"speedrun eval exited with status {code}")
    return code


# ---- the record of a run's jobs ---------------------------------------------------------------


class JobAttempt(BaseModel):
    job_id: str
    attempt: str
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    state: str = "PENDING"
    hostname: str = ""

    @property
    def queued_s(self) -> float | None:
        """Submission to start: the scheduler's and the job's start-up overhead."""
        return None if self.started_at is None else self.started_at - self.submitted_at


class JobsRecord(BaseModel):
    """`jobs.json` in a run's submitit folder: every job submitted for the run, in order."""

    schema_version: int = 1
    label: str = ""
    jobs: list[JobAttempt] = Field(default_factory=list)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)


def read_jobs(folder: Path) -> JobsRecord | None:
    path = folder / "jobs.json"
    return JobsRecord.model_validate_json(path.read_text()) if path.is_file() else None


# ---- the harness's side ---------------------------------------------------------------------


class _JobLimit:
    """At most `limit` jobs in flight in this process, whatever evaluation submits them."""

    def __init__(self) -> None:
        self.limit: int | None = None
        self.in_flight = 0
        self._cond = threading.Condition()
        self.stopping = threading.Event()

    def stop(self) -> None:
        """Make every run that waits for a job (or for a slot) cancel it and raise KeyboardInterrupt."""
        with self._cond:
            self.stopping.set()
            self._cond.notify_all()

    def resume(self) -> None:
        self.stopping.clear()

    def check(self) -> None:
        if self.stopping.is_set():
            raise KeyboardInterrupt("the harness is stopping")

    def set(self, limit: int | None) -> None:
        with self._cond:
            self.limit = limit
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Any:
        with self._cond:
            while self.limit is not None and self.in_flight >= self.limit and not self.stopping.is_set():
                self._cond.wait()
            self.check()
            self.in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()


JOBS = _JobLimit()
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
            "mem": _mem(s.mem_gb),
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
        job = _submit(executor, probe_machine, out)
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
        job = _submit(self._submitit(folder, spec), CandidateJob(), spec, outcome_path, attempt, self.wrap(spec))
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


def _mem(gb: float | None) -> str | None:
    """`--mem` in Slurm's units: whole gigabytes as `64GB`, else megabytes."""
    if gb is None:
        return None
    return f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"


def _submit(executor: Any, fn: Any, *args: Any) -> Any:
    """`executor.submit`, with sbatch's refusal (a wrong account, partition, QOS) as a user error."""
    import subprocess

    try:
        return executor.submit(fn, *args)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.output or b"").decode(errors="replace").strip().splitlines()
        raise ConfigError(f"sbatch refused the job: {detail[-1] if detail else exc}") from None
    except Exception as exc:
        if type(exc).__name__ == "FailedJobError":  # submitit's wrapper of sbatch's failure
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise ConfigError(f"sbatch refused the job: {lines[-1] if lines else exc}") from None
        raise


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


# ---- the whole evaluation as a job -------------------------------------------------------------


class SubmittedEval(BaseModel):
    """`eval --submit`'s record, so that a second submission of the same command is noticed."""

    schema_version: int = 1
    job_id: str
    argv: list[str]
    submitted_at: float
    log: Path


def submit_eval(argv: list[str], options: dict[str, Any], results_dir: Path) -> SubmittedEval:
    """Submit `speedrun <argv>` as a job; refuse while an earlier submission of it is still queued or running.

    The job exports the harness's environment (the model's API keys among it): it is the harness.
    The candidate jobs it submits in turn export only the allow-listed variables.
    """
    settings = settings_from(options)
    digest = hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:12]
    folder = (results_dir / ".slurm" / f"eval-{digest}").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / "submitted.json"
    if record_path.is_file():
        with contextlib.suppress(ValueError):
            old = SubmittedEval.model_validate_json(record_path.read_text())
            state = _job_state(old.job_id)
            if state in ACTIVE - {"UNKNOWN"}:
                raise ConfigError(
                    f"this evaluation is already submitted as Slurm job {old.job_id} ({state}); "
                    f"its output: {old.log}; `scancel {old.job_id}` stops it (a later --submit resumes)"
                )
    import submitit

    try:
        executor = submitit.SlurmExecutor(folder=folder, python=settings.python or shlex.quote(sys.executable))
    except RuntimeError as exc:
        raise ConfigError(f"--submit needs Slurm's commands here: {exc}") from None
    params: dict[str, Any] = {
        "job_name": "speedrun-eval",
        "time": settings.harness_time,
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": settings.harness_cpus,
        "use_srun": False,
        "stderr_to_stdout": True,
    }
    params.update({k: v for k, v in {"partition": settings.partition, "account": settings.account}.items() if v})
    if settings.qos:
        params["qos"] = settings.qos
    if settings.setup:
        params["setup"] = list(settings.setup)
    params["additional_parameters"] = {"requeue": True, "signal": "B:USR2@90", **sbatch_options(settings.sbatch)}
    params["additional_parameters"].pop("gpus_per_node", None)
    executor.update_parameters(**params)
    job = _submit(executor, run_harness, argv)
    record = SubmittedEval(
        job_id=str(job.job_id), argv=argv, submitted_at=time.time(), log=folder / f"{job.job_id}_0_log.out"
    )
    record_path.write_text(record.model_dump_json(indent=2))
    return record


def _job_state(job_id: str) -> str:
    """A job's state from sacct (UNKNOWN where sacct does not know it)."""
    import subprocess

    try:
        out = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "UNKNOWN"
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return lines[-1].split()[0].upper() if lines else "UNKNOWN"
