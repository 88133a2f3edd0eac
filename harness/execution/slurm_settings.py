"""The Slurm vocabulary the executor shares: job states, what a cluster user sets for jobs
(flags and `--executor-config slurm.toml`, validated in one model), and what of the harness's
environment a job may see."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError
from harness.execution.environment import PASSTHROUGH, is_secret

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


def mem_option(gb: float | None) -> str | None:
    """`--mem` in Slurm's units: whole gigabytes as `64GB`, else megabytes."""
    if gb is None:
        return None
    return f"{int(gb)}GB" if gb == int(gb) else f"{int(gb * 1024)}MB"


def submit_job(executor: Any, fn: Any, *args: Any) -> Any:
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
