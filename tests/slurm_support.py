"""The real Slurm that the slurm tests submit to (`.ci/slurm.sh` starts a one-node one).

Where no cluster answers, those tests skip and say how to get one; they never fall back to
submitit's local stand-in, which would pass without Slurm ever seeing a job.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

SETUP_HINT = "run `bash .ci/slurm.sh` (as root) to install and start a one-node cluster"


@dataclass(frozen=True)
class Cluster:
    partition: str
    gpus: int
    cpus: int


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout


@pytest.fixture(scope="session")
def slurm() -> Cluster:
    if shutil.which("sbatch") is None:
        pytest.skip(f"SLURM TESTS SKIPPED: no sbatch on this machine; {SETUP_HINT}")
    try:
        ping = _out("scontrol", "ping")
        nodes = _out("sinfo", "-h", "-o", "%P|%T|%G|%c")
        accounting = subprocess.run(["sacct", "-n", "-X", "-S", "now-1minutes"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"SLURM TESTS SKIPPED: Slurm does not answer ({exc}); {SETUP_HINT}")
    if "UP" not in ping:
        pytest.skip(f"SLURM TESTS SKIPPED: slurmctld is not up ({ping.strip() or 'no answer'}); {SETUP_HINT}")
    if accounting.returncode != 0:
        pytest.skip(f"SLURM TESTS SKIPPED: sacct fails (no slurmdbd?); {SETUP_HINT}")
    for line in nodes.splitlines():
        partition, state, gres, cpus = line.split("|")
        if state in ("idle", "mixed", "allocated"):
            m = re.search(r"gpu:(?:\w+:)?(\d+)", gres)
            return Cluster(partition=partition.rstrip("*"), gpus=int(m.group(1)) if m else 0, cpus=int(cpus))
    pytest.skip(f"SLURM TESTS SKIPPED: no node is up ({nodes.strip()}); {SETUP_HINT}")


def _queued_ids() -> set[str]:
    """The harness's jobs in the queue (every job it submits is named `speedrun-...`)."""
    try:
        rows = _out("squeue", "-h", "-o", "%i|%j").splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {job_id for job_id, _, name in (row.partition("|") for row in rows) if name.startswith("speedrun")}


@pytest.fixture
def no_jobs_left_behind() -> Iterator[None]:
    """Cancel the jobs a test leaves in the queue (a failed assertion mid-run, a timeout), and
    only those: a leftover holds the node's CPUs and starves every later test into a timeout."""
    if shutil.which("squeue") is None:
        yield
        return
    before = _queued_ids()
    yield
    leftover = sorted(_queued_ids() - before)
    if leftover:
        subprocess.run(["scancel", *leftover], capture_output=True, timeout=20)


def sacct(job_id: str, fields: str) -> dict[str, str]:
    """One job's accounting record (the allocation line), by field name, once slurmdbd has the
    whole of it: until the controller's start and end messages land, sacct shows a row with an
    empty partition and time limit and an unknown QOS."""
    got: dict[str, str] = {}
    for _ in range(150):
        out = _out("sacct", "-n", "-X", "-P", "-j", job_id, "-o", f"{fields},Partition,QOS,State")
        if out.strip():
            row = out.strip().splitlines()[0].split("|")
            n = len(fields.split(","))
            got = dict(zip(fields.split(","), row[:n], strict=True))
            partition, qos, state = row[n:]
            if partition and qos != "Unknown" and state not in ("PENDING", "RUNNING", ""):
                return got
        time.sleep(0.2)
    raise AssertionError(f"sacct has no complete record of job {job_id} after 30 s: {got}")


def wait_running(name_part: str, timeout_s: float = 120) -> str:
    """The id of the first running job whose name contains `name_part`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in _out("squeue", "-h", "-o", "%i|%j|%T").splitlines():
            job_id, name, state = line.split("|")
            if name_part in name and state == "RUNNING":
                return job_id
        time.sleep(0.3)
    raise AssertionError(f"no job named like {name_part!r} ran within {timeout_s:.0f}s")
