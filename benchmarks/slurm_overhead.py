"""Per-run overhead of the slurm executor against the local one, on the cluster this machine sees.

    python benchmarks/slurm_overhead.py [--runs 5] [--poll 0.5]

Each run is a trivial script (prints one log line); the figure is what the executor adds:
harness wall time per run, and for Slurm the time from submission to the job's start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.execution.base import RunSpec
from harness.execution.local import LocalExecutor
from harness.execution.slurm import SlurmExecutor
from harness.execution.slurm_jobs import read_jobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="slurm-overhead-"))
    out: dict[str, list[float]] = {"local": [], "slurm": [], "queued": []}
    for k in range(args.runs):
        for name, ex in (("local", LocalExecutor()), ("slurm", SlurmExecutor(poll_s=args.poll))):
            d = root / f"{name}-{k}"
            (d / "ws").mkdir(parents=True)
            (d / "ws" / "train.py").write_text("print('step:1/1 val_loss:1.0 train_time:1ms step_avg:1.00ms')\n")
            spec = RunSpec(
                command=[sys.executable, "train.py"], workspace=d / "ws", log_path=d / "run.log", time_limit_s=60
            )
            t0 = time.monotonic()
            assert ex.run(spec).ok
            out[name].append(time.monotonic() - t0)
            if name == "slurm":
                jobs = read_jobs(d / "slurm")
                assert jobs is not None and jobs.jobs[0].queued_s is not None
                out["queued"].append(jobs.jobs[0].queued_s)
    for name, values in out.items():
        print(f"{name:7s} median {statistics.median(values):6.2f} s  min {min(values):6.2f}  max {max(values):6.2f}")


if __name__ == "__main__":
    main()
