"""The slurm executor: its settings and batch script (pure), and jobs through a real Slurm.

The tests that submit use the `slurm` fixture: a real cluster (`.ci/slurm.sh` starts a
one-node one with eight fake GPUs), never submitit's local stand-in; without one they skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.errors import ConfigError
from harness.execution import get_executor
from harness.execution.base import RunSpec
from harness.execution.slurm import SlurmExecutor, export_list, read_jobs, sbatch_options
from tests.slurm_support import Cluster, sacct, slurm, wait_running

__all__ = ["slurm"]  # the fixture, imported for the tests below
runner = CliRunner()
SETTINGS = """\
[slurm]
partition = "debug"
account = "speedrun"
qos = "speedrun"
time = 7
cpus_per_task = 1
mem_gb = 1
constraint = "fast"
sbatch = ["--comment=from-the-config", "#SBATCH --exclusive"]
setup = ["echo setting up"]
"""


def _spec(tmp_path: Path, script: str, **kw: object) -> RunSpec:
    ws = tmp_path / "ws"
    ws.mkdir(exist_ok=True)
    (ws / "train.py").write_text(textwrap.dedent(script))
    fields: dict[str, object] = {
        "command": [sys.executable, "train.py"],
        "workspace": ws,
        "log_path": tmp_path / "run.log",
        "time_limit_s": 60,
        "label": "test/0",
    }
    fields.update(kw)
    return RunSpec.model_validate(fields)


# ---- settings and the batch script (no cluster needed) -------------------------------------------------------


def test_batch_script_carries_what_a_cluster_user_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    ex = SlurmExecutor(
        partition="gpu", account="lab", qos="high", time="1:00:00", cpus_per_task=8, mem_gb=64, constraint="h100"
    )
    script = ex.describe(_spec(tmp_path, "print(1)", gpus="2"))["sbatch"]
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --qos=high",
        "#SBATCH --time=1:00:00",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=64GB",
        "#SBATCH --constraint=h100",
        "#SBATCH --requeue",
    ):
        assert line in script.splitlines(), line
    export = next(line for line in script.splitlines() if line.startswith("#SBATCH --export="))
    assert "OPENAI_API_KEY" not in export and "PATH" in export  # names only, from the allow-list
    assert f"--output={tmp_path / 'slurm'}/%j_0_log.out" in script  # beside the log, not in the workspace


def test_time_defaults_to_the_run_limit_plus_a_margin(tmp_path: Path) -> None:
    script = SlurmExecutor().describe(_spec(tmp_path, "print(1)", time_limit_s=1800))["sbatch"]
    assert "#SBATCH --time=32" in script.splitlines()
    assert "gpus-per-node" not in script  # no --gpus, no gpus_per_node: no GPU asked for


def test_extra_sbatch_lines() -> None:
    assert sbatch_options(["--reservation=speedrun", "#SBATCH --exclusive", "--mail-type END"]) == {
        "reservation": "speedrun",
        "exclusive": True,
        "mail_type": "END",
    }
    with pytest.raises(ConfigError, match="long options"):
        sbatch_options(["-p gpu"])


def test_unknown_settings_and_bad_values_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="partiton.*settings: partition"):
        get_executor("slurm", partiton="gpu")
    with pytest.raises(ConfigError, match="cpus_per_task"):
        SlurmExecutor(cpus_per_task=0)
    with pytest.raises(ConfigError, match="not both"):
        SlurmExecutor(container="/bundles/mini", container_image="docker://mini")


def test_export_list_never_names_a_secret() -> None:
    env = {"PATH": "/bin", "HOME": "/h", "OPENAI_API_KEY": "x", "CUDA_VISIBLE_DEVICES": "0", "HF_TOKEN": "t"}
    assert export_list(env) == "HOME,PATH"
    assert export_list({}) == "NONE"


def test_containers_wrap_the_candidate_in_a_step(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "print(1)", data_dir=tmp_path)
    oci = SlurmExecutor(container="/bundles/mini").describe(spec)["in_job_command"]
    assert oci[:3] == ["srun", "--ntasks=1", "--container=/bundles/mini"] and oci[-1] == "train.py"
    pyxis = SlurmExecutor(container_image="docker://speedrun-mini").describe(spec)["in_job_command"]
    assert "--container-image=docker://speedrun-mini" in pyxis
    mounts = next(a for a in pyxis if a.startswith("--container-mounts="))
    assert f"{tmp_path}:{tmp_path}:ro" in mounts


def test_dry_run_shows_the_config_file_merged_under_the_flags(toy_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "slurm.toml"
    config.write_text(SETTINGS)
    result = runner.invoke(
        app,
        ["eval", "--track", "toy", "--model", "oracle", "--executor", "slurm", "--executor-config", str(config)]
        + ["--executor-arg", "partition=other", "--gpus", "4", "--max-parallel", "2", "--dry-run"],
    )
    assert result.exit_code == 0, result.output  # no cluster needed: a dry run submits nothing
    script = json.loads(result.output)["run"]["sbatch"].splitlines()
    assert "#SBATCH --partition=other" in script and "#SBATCH --account=speedrun" in script
    assert "#SBATCH --gpus-per-node=2" in script  # 4 GPUs, 2 slots: each job asks for its share
    assert "#SBATCH --comment=from-the-config" in script and "#SBATCH --exclusive" in script
    assert "echo setting up" in script and "#SBATCH --mem=1GB" in script
    assert not (tmp_path / "results").exists()


# ---- jobs on a real Slurm ----------------------------------------------------------------------------------


def test_job_runs_streams_and_gets_no_key(slurm: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    spec = _spec(
        tmp_path,
        """\
        import os
        print('step:1/1 val_loss:1.0000 train_time:5ms step_avg:5.00ms')
        parent = open(f'/proc/{os.getppid()}/environ', 'rb').read()
        print('key' if 'OPENAI_API_KEY' in os.environ or b'sk-must-not-leak' in parent else 'no key')
        """,
    )
    lines: list[str] = []
    res = SlurmExecutor(poll_s=0.5).run(spec, lines.append)
    assert res.ok and res.executor == "slurm", res
    log = spec.log_path.read_text()
    assert "no key" in log and lines[0].startswith("step:1/1")
    jobs = read_jobs(tmp_path / "slurm")
    assert jobs is not None and len(jobs.jobs) == 1 and jobs.jobs[0].state == "COMPLETED"
    assert jobs.jobs[0].queued_s is not None and jobs.jobs[0].queued_s >= 0


def test_limit_inside_job(slurm: Cluster, tmp_path: Path) -> None:
    res = SlurmExecutor(poll_s=0.5).run(_spec(tmp_path, "import time\ntime.sleep(300)\n", time_limit_s=2))
    assert res.timed_out


def test_sbatch_received_gpus_time_partition_account_qos(slurm: Cluster, tmp_path: Path) -> None:
    if slurm.gpus < 2:
        pytest.skip(f"SLURM GPU TEST SKIPPED: the node has no gres GPUs; {slurm}")
    spec = _spec(tmp_path, "import os\nprint('CVD=' + os.environ.get('CUDA_VISIBLE_DEVICES', ''))\n", gpus="2")
    ex = SlurmExecutor(partition=slurm.partition, account="speedrun", qos="speedrun", time=7, poll_s=0.5)
    assert ex.run(spec).ok
    jobs = read_jobs(tmp_path / "slurm")
    assert jobs is not None
    job_id = jobs.jobs[0].job_id
    got = sacct(job_id, "Partition,Account,QOS,Timelimit,AllocTRES")
    assert (got["Partition"], got["Account"], got["QOS"], got["Timelimit"]) == (
        slurm.partition,
        "speedrun",
        "speedrun",
        "00:07:00",
    )
    assert "gres/gpu=2" in got["AllocTRES"]
    assert len(spec.log_path.read_text().split("CVD=")[1].strip().split(",")) == 2  # Slurm set the devices
    # What ran is exactly what --dry-run shows.
    assert (tmp_path / "slurm" / f"{job_id}_submission.sh").read_text() == ex.describe(spec)["sbatch"]


def test_a_refused_account_is_a_clear_failure(slurm: Cluster, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="(?i)sbatch refused.*account"):
        SlurmExecutor(account="no-such-account", poll_s=0.5).run(_spec(tmp_path, "print(1)"))


def test_concurrent_jobs_get_disjoint_gpus(slurm: Cluster, tmp_path: Path) -> None:
    if slurm.gpus < 8 or slurm.cpus < 2:
        pytest.skip(f"SLURM GPU TEST SKIPPED: needs 8 gres GPUs and 2 CPUs; {slurm}")
    ex = SlurmExecutor(poll_s=0.5)
    script = "import os, time\nprint('CVD=' + os.environ['CUDA_VISIBLE_DEVICES'])\ntime.sleep(3)\n"
    for k in range(2):
        (tmp_path / str(k)).mkdir()
    specs = [_spec(tmp_path / str(k), script, gpus="4") for k in range(2)]
    threads = [threading.Thread(target=ex.run, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    devices = [set(s.log_path.read_text().split("CVD=")[1].split()[0].split(",")) for s in specs]
    assert len(devices[0]) == len(devices[1]) == 4 and not devices[0] & devices[1]


def test_preemption_signal_requeues_and_reruns_the_candidate(slurm: Cluster, tmp_path: Path) -> None:
    """submitit's preemption signal: the job requeues itself and runs the candidate again from its start."""
    spec = _spec(
        tmp_path,
        """\
        import pathlib, time
        starts = pathlib.Path('starts')
        starts.write_text(starts.read_text() + 'x' if starts.exists() else 'x')
        print('started', flush=True)
        time.sleep(6 if len(starts.read_text()) == 1 else 0)
        print('step:1/1 val_loss:1.0000 train_time:5ms step_avg:5.00ms')
        """,
        label="preempt/0",
    )
    ex = SlurmExecutor(poll_s=0.5)
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(ex.run(spec)))
    t.start()
    job_id = wait_running("preempt-0")
    while not (spec.workspace / "starts").exists():
        t.join(0.2)
    subprocess.run(["scancel", "--batch", "--signal=USR2", job_id], check=True)
    t.join(180)
    assert out and out[0].ok, out  # type: ignore[attr-defined]
    assert (spec.workspace / "starts").read_text() == "xx"
    jobs = read_jobs(tmp_path / "slurm")
    assert jobs is not None and [j.job_id for j in jobs.jobs] == [job_id]  # the same job, requeued


def test_scancel_mid_run_redoes_the_node_once(slurm: Cluster, toy_home: Path, tmp_path: Path) -> None:
    """A whole search on the toy track through Slurm; its node's job is cancelled mid-run."""
    from harness.eval.evaluate import EvalConfig, evaluate
    from tests.toytrack import toy_script

    # Slow steps, so that the node's run lasts long enough to be cancelled in the middle.
    for rec in sorted((toy_home / "records" / "toy").iterdir()):
        rate = float(rec.name.split("rate")[1])
        (rec / "train.py").write_text(toy_script(rate, step_s=0.05))
    cfg = EvalConfig(
        task="toy-0",
        model="oracle",
        scaffold_args={"nodes": 1},
        executor="slurm",
        executor_args={"poll_s": 0.5},
        results_dir=tmp_path / "results",
        calibration_runs=1,
        confirm_runs=1,
    )
    cancelled: list[str] = []

    def cancel_node_job() -> None:
        job_id = wait_running(f"{cfg.run_id()}-0"[:60], timeout_s=300)
        subprocess.run(["scancel", job_id], check=True)
        cancelled.append(job_id)

    killer = threading.Thread(target=cancel_node_job, daemon=True)
    killer.start()
    info = evaluate(cfg)
    killer.join(5)
    assert cancelled, "the node's job was never seen running"
    assert info.status == "finished" and info.score is not None and info.score.valid_nodes == 1
    node = tmp_path / "results" / info.run_id / "nodes" / "0"
    jobs = read_jobs(node / "slurm")
    assert jobs is not None and [j.state for j in jobs.jobs] == ["CANCELLED", "COMPLETED"]
    assert jobs.jobs[0].job_id == cancelled[0]
    assert "the run was done again" in (node / "run.log").read_text()
    assert info.score.reference.source == "calibrated"  # reference times measured through the same jobs
