"""The slurm executor: its settings and batch script (pure), and jobs through a real Slurm.

The tests that submit use the `slurm` fixture: a real cluster (`.ci/slurm.sh` starts a
one-node one with eight fake GPUs), never submitit's local stand-in; without one they skip.
"""

from __future__ import annotations

import json
import re
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
from harness.execution.slurm import SlurmExecutor
from harness.execution.slurm_jobs import read_jobs
from harness.execution.slurm_settings import export_list, sbatch_options
from harness.search.journal import Journal
from tests.slurm_support import Cluster, no_jobs_left_behind, sacct, slurm, wait_running

__all__ = ["no_jobs_left_behind", "slurm"]  # the fixtures, imported for the tests below
pytestmark = pytest.mark.usefixtures("no_jobs_left_behind")
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
    with pytest.raises(ConfigError, match=r"partiton.*settings: partition"):
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
    assert oci[:4] == ["srun", "--ntasks=1", "--export=ALL", "--container=/bundles/mini"]
    assert oci[-1] == "train.py"
    pyxis = SlurmExecutor(container_image="docker://speedrun-mini").describe(spec)["in_job_command"]
    assert "--container-image=docker://speedrun-mini" in pyxis
    mounts = next(a for a in pyxis if a.startswith("--container-mounts="))
    assert f"{tmp_path}:{tmp_path}:ro" in mounts


def test_dry_run_shows_the_config_file_merged_under_the_flags(toy_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "slurm.toml"
    config.write_text(SETTINGS)
    result = runner.invoke(
        app,
        [
            *["eval", "--track", "toy", "--model", "oracle", "--executor", "slurm", "--executor-config", str(config)],
            *["--executor-arg", "partition=other", "--gpus", "4", "--max-parallel", "2", "--dry-run"],
        ],
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
        try:  # in the job's sandbox the parent is the sandbox's init, whose environment is closed
            parent = open(f'/proc/{os.getppid()}/environ', 'rb').read()
        except PermissionError:
            parent = b''
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
    with pytest.raises(ConfigError, match=r"(?i)sbatch refused.*account"):
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
        import time
        print('started', flush=True)
        time.sleep(6)
        print('step:1/1 val_loss:1.0000 train_time:5ms step_avg:5.00ms')
        """,
        label="preempt/0",
    )
    ex = SlurmExecutor(poll_s=0.5)
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(ex.run(spec)))
    t.start()
    job_id = wait_running("preempt-0")
    # The workspace is the sandbox's own tmpfs: the log is where the harness sees the start.
    while not (spec.log_path.exists() and "started" in spec.log_path.read_text()):
        t.join(0.2)
    subprocess.run(["scancel", "--batch", "--signal=USR2", job_id], check=True)
    # Slurm holds a requeued job back for two minutes; as the cluster's admin, let it start now.
    for _ in range(100):
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True).stdout
        if state.strip() == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
            break
        t.join(0.2)
    t.join(180)
    assert out and out[0].ok, out  # type: ignore[attr-defined]
    restarts = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts, restarts
    assert spec.log_path.read_text().count("step:1/1") == 1  # the rerun's log, not the killed run's
    jobs = read_jobs(tmp_path / "slurm")
    assert jobs is not None and [j.job_id for j in jobs.jobs] == [job_id]  # the same job, requeued


def test_scancel_mid_run_redoes_the_node_once(slurm: Cluster, toy_home: Path, tmp_path: Path) -> None:
    """A whole search on the toy track through Slurm; its node's job is cancelled mid-run."""
    from harness.eval.config import EvalConfig
    from harness.eval.evaluate import evaluate
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


# About a minute on 2 cores: two calibration runs, two nodes at once, a confirmation pair, at the smoke target.
@pytest.mark.timeout(1800)
def test_mini_eval_through_slurm_two_slots_is_scored_like_a_local_one(
    slurm: Cluster, tmp_path: Path, mini_data_dir: Path
) -> None:
    """The mini track end to end on the real cluster: oracle, two run slots, real training at a loose target."""
    from harness.leaderboard import collect
    from harness.manifests.tracks import load_track

    task = load_track("mini").tasks()[-1].id
    args = ["eval", "--track", "mini", "--task", task, "--model", "oracle", "--nodes", "2", "--max-parallel", "2"]
    args += ["--executor", "slurm", "--executor-arg", "poll_s=1", "--target-val-loss", "2.6"]
    args += ["--calibration-runs", "1", "--confirm-runs", "1", "--data-dir", str(mini_data_dir)]
    args += ["--results-dir", str(tmp_path / "results")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "FSR" in result.output
    rows = collect(tmp_path / "results")
    assert len(rows) == 1 and rows.iloc[0]["task"] == task and rows.iloc[0]["fsr"] == rows.iloc[0]["fsr"]
    run_dir = next((tmp_path / "results").glob(f"{task}__*"))
    info = json.loads((run_dir / "run.json").read_text())
    errors = [f"{n.id} {n.status}: {n.error}" for n in Journal(run_dir).all()]
    assert info["status"] == "finished" and info["score"]["valid_nodes"] == 2, errors
    starts = []
    for n in (0, 1):
        jobs = read_jobs(run_dir / "nodes" / str(n) / "slurm")
        assert jobs is not None and jobs.jobs[-1].state == "COMPLETED"
        starts.append((jobs.jobs[-1].started_at, jobs.jobs[-1].ended_at))
    (a0, a1), (b0, b1) = starts
    assert a0 is not None and b0 is not None and a1 is not None and b1 is not None
    assert a0 < b1 and b0 < a1, "the two slots' jobs did not run at once"


def _poll_until_ended(job_id: str, timeout_s: float = 400) -> str:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = sacct(job_id, "State")["State"].split()[0]
        if state not in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING"):
            return state
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not end within {timeout_s:.0f}s")


def test_tasks_run_at_once_under_max_jobs(slurm: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--tasks all --max-jobs 2`: both tasks' searches at once, never more than two jobs in flight."""
    from harness.leaderboard import collect
    from tests.toytrack import write_toy_track

    home = write_toy_track(tmp_path / "home", rates=(0.02, 0.04, 0.08), step_s=0.01)
    monkeypatch.setenv("SPEEDRUN_HOME", str(home))
    results = tmp_path / "results"
    args = ["eval", "--track", "toy", "--tasks", "all", "--model", "oracle", "--executor", "slurm"]
    args += ["--executor-arg", "poll_s=0.5", "--max-jobs", "2", "--calibration-runs", "1", "--confirm-runs", "0"]
    result = runner.invoke(app, [*args, "--results-dir", str(results)])
    assert result.exit_code == 0, result.output
    rows = collect(results)
    assert sorted(rows["task"]) == ["toy-0", "toy-1"] and list(rows["status"]) == ["finished", "finished"]
    spans = []
    for jobs_json in results.glob("*/nodes/*/slurm/jobs.json"):
        for job in json.loads(jobs_json.read_text())["jobs"]:
            spans.append((job["submitted_at"], job["ended_at"], jobs_json.parts[-5]))
    assert {run for *_, run in spans} == {r for r in rows["run_id"]}
    events = sorted([(t0, 1) for t0, _, _ in spans] + [(t1, -1) for _, t1, _ in spans])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak <= 2
    (_, a1, _), (b0, _, _) = sorted(spans)[:2]
    assert b0 < a1, "the second task's node waited for the first task's"


def test_submit_runs_the_evaluation_as_a_job_and_resumes(slurm: Cluster, toy_home: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    cmd = [sys.executable, "-c", "from harness.cli.app import app; app()", "eval", "--track", "toy", "--task", "toy-0"]
    cmd += ["--model", "oracle", "--executor", "slurm", "--executor-arg", "poll_s=0.5", "--executor-arg"]
    cmd += ["harness_cpus=1", "--calibration-runs", "1", "--confirm-runs", "0", "--results-dir", str(results)]
    first = subprocess.run([*cmd, "--submit"], capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr + first.stdout
    job_id = re.search(r"Slurm job (\d+)", first.stdout).group(1)  # type: ignore[union-attr]
    again = subprocess.run([*cmd, "--submit"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and f"already submitted as Slurm job {job_id}" in " ".join(again.stderr.split())
    assert _poll_until_ended(job_id) == "COMPLETED"
    run_dir = next(results.glob("toy-0__*"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    started = (run_dir / "journal.jsonl").read_text().count('"started"')
    resumed = subprocess.run([*cmd, "--submit"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    second = re.search(r"Slurm job (\d+)", resumed.stdout).group(1)  # type: ignore[union-attr]
    assert second != job_id and _poll_until_ended(second) == "COMPLETED"
    assert (run_dir / "journal.jsonl").read_text().count('"started"') == started  # nothing redone


def _host_bundle(root: Path, writable: Path) -> Path:
    """An OCI bundle whose root is empty but for the host's system directories, read-only, and
    `writable` (where the workspace and log lie) read-write: a real container without an image."""
    bundle = root / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["root"] = {"path": "rootfs", "readonly": True}
    config["process"]["terminal"] = False
    binds = [Path(p) for p in ("/usr", "/lib", "/lib64", "/bin", "/etc") if Path(p).exists()]
    for path in [*binds, Path(sys.base_prefix), writable]:
        (bundle / "rootfs" / path.relative_to("/")).mkdir(parents=True, exist_ok=True)
        options = ["rbind", "rw" if path == writable else "ro"]
        config["mounts"].append({"destination": str(path), "type": "bind", "source": str(path), "options": options})
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def test_candidate_runs_in_slurms_oci_container(slurm: Cluster, tmp_path: Path) -> None:
    """Slurm's own `--container` (oci.conf + runc): the candidate sees the bundle's filesystem, not the node's."""
    import shutil

    if shutil.which("runc") is None or not Path("/etc/slurm/oci.conf").exists():
        pytest.skip("SLURM OCI TEST SKIPPED: no runc or no oci.conf on this node; run `bash .ci/slurm.sh`")
    work = tmp_path / "work"
    work.mkdir()
    spec = _spec(
        work,
        """\
        import os
        print('root:' + ','.join(sorted(os.listdir('/'))))
        print('cwd:' + os.getcwd() + ' seed:' + os.environ.get('SPEEDRUN_SEED', '-'))
        print('step:1/1 val_loss:1.0000 train_time:5ms step_avg:5.00ms')
        """,
        env={"SPEEDRUN_SEED": "7"},
    )
    res = SlurmExecutor(container=str(_host_bundle(tmp_path, work)), poll_s=0.5).run(spec)
    log = spec.log_path.read_text()
    assert res.ok, log
    root = set(log.split("root:")[1].split()[0].split(","))
    assert "home" not in root and "var" not in root and "usr" in root  # the bundle's root, not the node's
    assert f"cwd:{spec.workspace.resolve()} seed:7" in log
