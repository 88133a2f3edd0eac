"""`speedrun eval --submit`: the whole evaluation as one Slurm job, resumable by re-running."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.errors import ConfigError
from harness.execution.slurm_job import run_harness
from harness.execution.slurm_settings import ACTIVE, sbatch_options, settings_from, submit_job

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
    job = submit_job(executor, run_harness, argv)
    record = SubmittedEval(
        job_id=str(job.job_id), argv=argv, submitted_at=time.time(), log=folder / f"{job.job_id}_0_log.out"
    )
    record_path.write_text(record.model_dump_json(indent=2))
    return record


def _job_state(job_id: str) -> str:
    """A job's state: the controller's (squeue) while it holds the job, else sacct's, else UNKNOWN.

    squeue comes first because slurmdbd learns of a job a moment after sbatch returns: asked
    by sacct alone, a second --submit right after the first would find nothing and start a
    second harness on the same results directory.
    """
    import subprocess

    for cmd in (
        ["squeue", "-h", "-j", job_id, "-o", "%T"],
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id],
    ):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if lines:
            return lines[-1].split()[0].upper()
    return "UNKNOWN"
