"""Run candidates as Slurm jobs through submitit, for evaluations spread over many nodes.

Each candidate becomes one job; inside it the local executor runs the command (own process
group, wall-clock limit, allow-listed environment), so the limits and the log are the same
as on one machine. The results directory must be on a filesystem the nodes share. Like
`local`, this is not a sandbox: combine it with containers on the cluster side if needed.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.execution.base import ExecResult, Executor, LineCallback, RunSpec
from harness.execution.local import LocalExecutor
from harness.execution.registry import register

#: How often the harness looks at a job's log and state.
POLL_S = 2.0


def _run_in_job(spec: RunSpec) -> ExecResult:
    """What the Slurm job executes (pickled by submitit)."""
    return LocalExecutor().run(spec)


@register
class SlurmExecutor(Executor):
    name = "slurm"
    sandboxed = False

    def __init__(
        self,
        *,
        partition: str | None = None,
        gpus_per_node: int | None = None,
        cpus_per_task: int | None = None,
        mem_gb: int | None = None,
        account: str | None = None,
        cluster: str | None = None,
        poll_s: float = POLL_S,
        **slurm_additional: Any,
    ) -> None:
        try:
            import submitit
        except ImportError:
            raise ConfigError("the slurm executor needs submitit: pip install 'speedrun[slurm]'") from None
        self._submitit = submitit
        self.cluster = cluster
        self.poll_s = poll_s
        self.params: dict[str, Any] = {
            k: v
            for k, v in {
                "slurm_partition": partition,
                "gpus_per_node": gpus_per_node,
                "cpus_per_task": cpus_per_task,
                "mem_gb": mem_gb,
                "slurm_account": account,
            }.items()
            if v is not None
        }
        if slurm_additional:
            self.params["slurm_additional_parameters"] = slurm_additional

    def _executor(self, folder: Path, time_limit_s: float) -> Any:
        ex = self._submitit.AutoExecutor(folder=folder, cluster=self.cluster)
        # The job's own limit leaves room for the in-job limit to fire first and save the log.
        ex.update_parameters(timeout_min=math.ceil(time_limit_s / 60) + 2, nodes=1, tasks_per_node=1, **self.params)
        return ex

    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        job = self._executor(spec.log_path.parent / "slurm", spec.time_limit_s).submit(_run_in_job, spec)
        seen = 0
        try:
            while not job.done():
                seen = _follow(spec.log_path, seen, on_line)
                time.sleep(self.poll_s)
            _follow(spec.log_path, seen, on_line)
            try:
                result: ExecResult = job.result()
            except Exception as exc:  # the job itself failed (node lost, preempted, cancelled)
                return ExecResult(
                    exit_code=None,
                    error=f"slurm job {job.job_id} failed: {exc}",
                    log_path=spec.log_path,
                    executor=self.name,
                    sandboxed=False,
                )
        except BaseException:
            job.cancel(check=False)  # Ctrl-C or a harness crash must not leave jobs queued
            raise
        return result.model_copy(update={"executor": self.name})

    def describe(self, spec: RunSpec) -> dict[str, Any]:
        return {**super().describe(spec), "slurm": {"cluster": self.cluster or "auto", **self.params}}


def _follow(path: Path, offset: int, on_line: LineCallback | None) -> int:
    """Pass on the log lines written since `offset`; returns the new offset."""
    if on_line is None or not path.is_file():
        return offset
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    for line in chunk[:end].splitlines():
        on_line(line.decode("utf-8", errors="replace"))
    return offset + end
