"""The docker executor against a real engine: each protection is shown by what a hostile script can't do.

Needs a running engine and the mini image (`bash .ci/docker-engine.sh`); otherwise the
engine tests skip with that reason. The config tests at the top need neither.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.execution import get_executor
from harness.execution.base import RunSpec
from harness.execution.docker import DockerExecutor, device_requests
from harness.execution.docker_container import make_writable_for, prune_containers
from harness.logparse import parse_log
from tests.docker_support import Sandbox, docker_client, mini_image, sandbox

pytestmark = pytest.mark.docker

__all__ = ["docker_client", "mini_image", "sandbox"]  # fixtures, imported for pytest to find


# -- configuration (no engine needed) --------------------------------------------------------


def _spec(tmp_path: Path, **fields: Any) -> RunSpec:
    data = tmp_path / "data" / "mini"
    data.mkdir(parents=True, exist_ok=True)
    defaults: dict[str, Any] = {
        "command": ["python", "train.py"],
        "workspace": tmp_path / "ws",
        "log_path": tmp_path / "log",
        "time_limit_s": 10,
        "data_dir": data,
        "label": "mini-0/n3",
    }
    return RunSpec(**{**defaults, **fields})


def test_describe_shows_the_locked_down_container(tmp_path: Path) -> None:
    executor = get_executor("docker", image="speedrun-mini:latest", cpus=1.5)
    d = executor.describe(_spec(tmp_path))
    assert d["sandboxed"] is True and d["executor"] == "docker"
    assert d["image"] == "speedrun-mini:latest"
    assert d["network_mode"] == "none"
    assert d["cap_drop"] == ["ALL"]
    assert d["security_opt"][0] == "no-new-privileges"
    profile = json.loads(d["security_opt"][1].removeprefix("seccomp="))
    denied = profile["syscalls"][0]["names"]
    assert {"ptrace", "io_uring_setup", "io_uring_enter", "process_vm_readv", "unshare", "mount"} <= set(denied)
    assert d["read_only"] is True
    assert d["user"] == "1000:1000"
    assert d["working_dir"] == "/workspace"
    assert d["command"][-2:] == ["python", "train.py"]  # behind a shell that joins stderr to stdout
    assert d["volumes"] == {
        str((tmp_path / "ws").resolve()): {"bind": "/speedrun/code", "mode": "ro"},
        str((tmp_path / "data" / "mini").resolve()): {"bind": "/data", "mode": "ro"},
    }
    assert d["tmpfs"]["/tmp"].startswith("rw,nosuid,nodev,size=")
    # The workspace is a tmpfs bounded in size and in files, owned by the container's user.
    assert "size=1g" in d["tmpfs"]["/workspace"] and "nr_inodes=10000" in d["tmpfs"]["/workspace"]
    assert "uid=1000,gid=1000" in d["tmpfs"]["/workspace"]
    assert d["mem_limit"] == d["memswap_limit"]
    assert d["pids_limit"] > 0 and d["shm_size"] and d["nano_cpus"] == 1_500_000_000
    assert d["labels"] == {"speedrun": "1", "speedrun.run": "mini-0/n3"}
    assert "device_requests" not in d
    json.dumps(d)  # --dry-run prints it


def test_env_is_documented_only_and_host_paths_are_rewritten(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary")
    data = tmp_path / "data" / "mini"
    spec = _spec(
        tmp_path,
        env={
            "NANOGPT_TRAIN_FILES": f"{data}/mini_train_*.bin",
            "NANOGPT_VAL_FILES": f"{data}/mini_val_*.bin",
            "OTHER": f"{data}2/x:{data}",  # a sibling directory is not the data
            "CKPT": f"{tmp_path / 'ws'}/ckpt",
            "HF_TOKEN": "canary",
        },
    )
    env = DockerExecutor("img").container_env(spec)
    assert env["NANOGPT_TRAIN_FILES"] == "/data/mini_train_*.bin"
    assert env["NANOGPT_VAL_FILES"] == "/data/mini_val_*.bin"
    assert env["OTHER"] == f"{data}2/x:/data"
    assert env["CKPT"] == "/workspace/ckpt"
    assert "HF_TOKEN" not in env and "OPENAI_API_KEY" not in env and "PATH" not in env
    assert env["HOME"] == "/tmp"
    assert not any("canary" in v for v in env.values())


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        (None, []),
        ("none", []),
        ("all", [{"driver": "nvidia", "capabilities": [["gpu"]], "count": -1}]),
        ("2", [{"driver": "nvidia", "capabilities": [["gpu"]], "count": 2}]),
        ("0,1", [{"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["0", "1"]}]),
        ("device=3", [{"driver": "nvidia", "capabilities": [["gpu"]], "device_ids": ["3"]}]),
    ],
)
def test_gpus_become_device_requests(gpus: str | None, expected: list[dict[str, Any]], tmp_path: Path) -> None:
    assert device_requests(gpus) == expected
    d = DockerExecutor("img").describe(_spec(tmp_path, gpus=gpus))
    assert d.get("device_requests", []) == expected


def test_cpuset_pins_and_thread_count_passes_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    d = get_executor("docker", image="img", cpuset=0).describe(_spec(tmp_path))
    assert d["cpuset_cpus"] == "0" and d["environment"]["OMP_NUM_THREADS"] == "1"
    assert "cpuset_cpus" not in DockerExecutor("img").describe(_spec(tmp_path))
    with pytest.raises(ConfigError, match="cpuset"):
        DockerExecutor("img", cpuset="0;1")


def test_cpu_limits_are_part_of_the_calibration_key() -> None:
    """Reference times measured on one pinned core are filed apart from unpinned ones."""
    assert DockerExecutor("img").calibration_key == "docker"
    assert DockerExecutor("img", cpuset="0,2").calibration_key == "docker-cpuset0_2"
    assert DockerExecutor("img", cpuset=1, cpus="1.5").calibration_key == "docker-cpuset1-cpus1.5"
    with pytest.raises(ConfigError, match="cpus"):
        DockerExecutor("img", cpus="two")
    with pytest.raises(ConfigError, match="cpus"):
        DockerExecutor("img", cpus=0)


def test_bad_gpus_and_users_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--gpus"):
        device_requests("0;rm -rf")
    with pytest.raises(ConfigError, match="uid:gid"):
        DockerExecutor("img", user="root")


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    ws = tmp_path / "ws"
    (ws / "sub").mkdir(parents=True)
    (ws / "train.py").write_text("print()")
    (ws / "run.sh").write_text("true")
    (ws / "run.sh").chmod(0o700)
    outside = tmp_path / "host-file"
    outside.write_text("not the run's")
    outside.chmod(0o600)
    (ws / "sub" / "link").symlink_to(outside)  # planted by an earlier run's code
    return ws, outside


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_as_root_the_workspace_is_given_to_the_container_user(tmp_path: Path) -> None:
    ws, outside = _tree(tmp_path)
    make_writable_for(ws, "1000:1000")
    for path in (ws, ws / "sub", ws / "train.py", ws / "sub" / "link"):
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (1000, 1000), path
    assert outside.stat().st_uid == 0  # the link was not followed


def test_as_another_user_the_workspace_is_opened_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, outside = _tree(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 4321)  # neither root nor the container's uid
    make_writable_for(ws, "1000:1000")
    assert ws.stat().st_mode & 0o777 == 0o777 and (ws / "sub").stat().st_mode & 0o777 == 0o777
    assert (ws / "train.py").stat().st_mode & 0o777 == 0o666
    assert (ws / "run.sh").stat().st_mode & 0o777 == 0o777
    assert outside.stat().st_mode & 0o777 == 0o600  # the link was not followed


def test_as_the_container_user_nothing_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _ = _tree(tmp_path)
    before = {p: p.lstat() for p in ws.rglob("*")}
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    make_writable_for(ws, "1000:1000")
    assert {p: p.lstat() for p in ws.rglob("*")} == before


# -- protections, shown by behaviour -----------------------------------------------------------

NETWORK = """
    import json, os, socket
    out = {"interfaces": sorted(os.listdir("/sys/class/net"))}
    for name, addr in {"public": ("1.1.1.1", 53), "pypi": ("151.101.0.223", 443)}.items():
        try:
            socket.create_connection(addr, timeout=3).close()
            out[name] = "CONNECTED"
        except OSError as exc:
            out[name] = f"blocked: {exc}"
    try:
        socket.getaddrinfo("pypi.org", 443)
        out["dns"] = "RESOLVED"
    except OSError as exc:
        out["dns"] = f"blocked: {exc}"
    print(json.dumps(out))
"""


def test_network_is_unreachable(sandbox: Sandbox) -> None:
    result, log, _ = sandbox.run(NETWORK)
    assert result.ok, log
    out = json.loads(log.strip().splitlines()[-1])
    assert out["interfaces"] == ["lo"]
    assert out["public"].startswith("blocked") and "unreachable" in out["public"]
    assert out["pypi"].startswith("blocked")
    assert out["dns"].startswith("blocked")


WRITES = """
    import json
    out = {}
    for path in ["/etc/evil", "/usr/evil", "/evil", "/opt/venv/evil", "/data/evil",
                 "/data/shard.bin", "/tmp/ok", "/workspace/ok"]:
        try:
            with open(path, "ab") as f:
                f.write(b"x")
            out[path] = "written"
        except OSError as exc:
            out[path] = f"refused: {exc.strerror}"
    print(json.dumps(out))
"""


def test_only_workspace_and_tmp_are_writable(sandbox: Sandbox) -> None:
    (sandbox.data_dir / "shard.bin").write_bytes(b"data")
    result, log, spec = sandbox.run(WRITES)
    assert result.ok, log
    out = json.loads(log.strip().splitlines()[-1])
    for path in ("/etc/evil", "/usr/evil", "/evil", "/opt/venv/evil", "/data/evil", "/data/shard.bin"):
        assert out[path].startswith("refused"), (path, out[path])
    assert out["/data/evil"] == "refused: Read-only file system"
    assert out["/tmp/ok"] == out["/workspace/ok"] == "written"
    assert not (spec.workspace / "ok").exists(), "the workspace is a tmpfs: nothing reaches the host"
    assert (sandbox.data_dir / "shard.bin").read_bytes() == b"data"
    assert sorted(p.name for p in sandbox.data_dir.iterdir()) == ["shard.bin"]


DATA_READ = """
    import os
    with open(os.environ["NANOGPT_VAL_FILES"], "rb") as f:
        print("read", len(f.read()), "bytes from", os.environ["NANOGPT_VAL_FILES"])
    import subprocess
    print("remount:", subprocess.run(["mount", "-o", "remount,rw", "/data"], capture_output=True).returncode)
    try:
        os.chmod("/data/val.bin", 0o777)
        print("chmod: allowed")
    except OSError as exc:
        print("chmod:", exc.strerror)
"""


def test_data_mount_is_read_only_but_readable(sandbox: Sandbox) -> None:
    (sandbox.data_dir / "val.bin").write_bytes(b"\x01" * 1000)
    result, log, _ = sandbox.run(DATA_READ, env={"NANOGPT_VAL_FILES": str(sandbox.data_dir / "val.bin")})
    assert result.ok, log
    assert "read 1000 bytes from /data/val.bin" in log
    assert "remount: 0" not in log  # no capabilities: the mount cannot be made writable
    assert "chmod: Read-only file system" in log


ENV_DUMP = """
    import json, os
    print(json.dumps(dict(os.environ)))
"""


def test_api_keys_never_reach_the_container(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-openai")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-canary-anthropic")
    monkeypatch.setenv("SPEEDRUN_SECRET", "canary-secret")
    env = {"NANOGPT_VAL_TOKENS": "1234", "WANDB_API_KEY": "canary-wandb", "GITHUB_TOKEN": "canary-gh"}
    result, log, _ = sandbox.run(ENV_DUMP, env=env)
    assert result.ok, log
    seen = json.loads(log.strip().splitlines()[-1])
    assert seen["NANOGPT_VAL_TOKENS"] == "1234"
    assert "canary" not in log
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "SPEEDRUN_SECRET", "WANDB_API_KEY", "GITHUB_TOKEN"):
        assert name not in seen


def test_cpuset_is_the_run_s_affinity(sandbox: Sandbox) -> None:
    result, log, _ = sandbox.run(
        "import os; print(sorted(os.sched_getaffinity(0)))", executor=sandbox.executor(cpuset=0)
    )
    assert result.ok, log
    assert log.strip().splitlines()[-1] == "[0]"


def test_runs_as_non_root_without_capabilities(sandbox: Sandbox) -> None:
    script = """
        import os
        print("uid", os.getuid(), "gid", os.getgid())
        status = open("/proc/self/status").read()
        for line in status.splitlines():
            if line.startswith(("CapEff", "CapBnd", "NoNewPrivs")):
                print(line.replace("\\t", " "))
    """
    result, log, _ = sandbox.run(script)
    assert result.ok, log
    assert "uid 1000 gid 1000" in log
    assert "CapEff: 0000000000000000" in log and "CapBnd: 0000000000000000" in log
    assert "NoNewPrivs: 1" in log


FORK_BOMB = """
    import os, time
    children = 0
    try:
        while True:
            if os.fork() == 0:
                time.sleep(300)
                os._exit(0)
            children += 1
    except OSError as exc:
        print(f"fork refused after {children} children: {exc.strerror}", flush=True)
        raise SystemExit(3)
"""


def test_fork_bomb_is_contained_by_the_pids_limit(sandbox: Sandbox) -> None:
    result, log, _ = sandbox.run(FORK_BOMB, executor=sandbox.executor(pids_limit=48), time_limit_s=60)
    assert result.exit_code == 3 and not result.timed_out, log
    children = int(log.split("fork refused after ")[1].split()[0])
    assert 0 < children < 48
    assert "Resource temporarily unavailable" in log
    # The sleeping children died with the container; the run ended long before they would.
    assert result.wall_s < 30


MEMORY_HOG = """
    hog = []
    while True:
        hog.append(b"\\x01" * (16 << 20))  # written, so really resident
        print(f"holding {len(hog) * 16} MiB", flush=True)
"""


def test_memory_hog_is_killed_and_reported_as_oom(sandbox: Sandbox) -> None:
    result, log, _ = sandbox.run(MEMORY_HOG, executor=sandbox.executor(memory="256m"), time_limit_s=60)
    assert result.oom, log[-500:]
    assert not result.ok and not result.timed_out
    assert result.exit_code == 137
    assert result.describe_failure() == "killed: out of memory"
    held = int(log.strip().splitlines()[-1].split()[1])
    assert 128 <= held <= 256


def test_sleeping_past_the_limit_is_killed_and_reported_as_timed_out(sandbox: Sandbox) -> None:
    script = """
        import time
        print("sleeping", flush=True)
        time.sleep(300)
        print("woke up")
    """
    t0 = time.monotonic()
    result, log, _ = sandbox.run(script, time_limit_s=3)  # `run` also checks the container is gone
    assert result.timed_out and result.exit_code is None and not result.oom
    assert result.describe_failure() == "killed: wall-clock limit reached"
    assert "sleeping" in log and "woke up" not in log
    assert 3 <= result.wall_s < 10
    assert time.monotonic() - t0 < 20


def test_log_is_streamed_while_the_run_goes_on(sandbox: Sandbox) -> None:
    script = """
        import sys, time
        print("first", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        time.sleep(2)
        print("second", end="", flush=True)
    """
    seen: list[tuple[str, float, str]] = []
    log_path: list[Path] = []

    def on_line(line: str) -> None:
        seen.append((line, time.monotonic(), log_path[0].read_text()))

    spec = sandbox.spec(script)
    log_path.append(spec.log_path)
    result = sandbox.executor().run(spec, on_line)
    end = time.monotonic()
    sandbox.assert_removed(spec.label)
    assert result.ok
    assert [line for line, _, _ in seen] == ["first", "to stderr", "second"]
    _, first_at, log_then = seen[0]
    assert end - first_at > 1.5, "the first line arrived only at the end"
    assert "first" in log_then, "the log file is written as lines arrive"
    assert spec.log_path.read_text() == "first\nto stderr\nsecond"


def test_stream_survives_silence_longer_than_the_client_timeout(sandbox: Sandbox) -> None:
    from harness.execution.images import docker_client as connect

    executor = sandbox.executor()
    executor._client = connect(timeout=2)  # a long compile or step is silent for minutes
    script = """
        import time
        print("before", flush=True)
        time.sleep(4)
        print("after")
    """
    result, log, _ = sandbox.run(script, executor=executor)
    assert result.ok and log == "before\nafter\n"


def test_log_flood_is_capped(sandbox: Sandbox) -> None:
    script = """
        line = "x" * 1000
        while True:
            print(line)
    """
    executor = sandbox.executor(max_log_bytes=1 << 20)
    result, log, spec = sandbox.run(script, executor=executor, time_limit_s=60)
    assert result.error is not None and "log exceeded" in result.error
    assert spec.log_path.stat().st_size <= (1 << 20) + 100
    assert log.endswith("[speedrun] log limit reached; run killed\n")
    assert result.wall_s < 30


def test_ctrl_c_removes_the_container(sandbox: Sandbox) -> None:
    script = """
        import time
        print("started", flush=True)
        time.sleep(300)
    """
    spec = sandbox.spec(script, time_limit_s=120)

    def interrupt(line: str) -> None:
        # Ctrl-C arrives while the harness waits on the running container.
        if line == "started":
            os.kill(os.getpid(), signal.SIGINT)

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        sandbox.executor().run(spec, interrupt)
    assert time.monotonic() - t0 < 30
    sandbox.assert_removed(spec.label)
    assert "started" in spec.log_path.read_text()


def test_a_failing_line_callback_neither_stops_the_log_nor_goes_unnoticed(sandbox: Sandbox) -> None:
    script = """
        for k in range(3):
            print(f"line {k}", flush=True)
    """
    spec = sandbox.spec(script)

    def broken(line: str) -> None:
        raise RuntimeError(f"renderer bug on {line!r}")

    result = sandbox.executor().run(spec, broken)
    assert result.ok, "a callback's fault is not the run's"
    assert any("renderer bug on 'line 0'" in w for w in result.warnings)
    assert spec.log_path.read_text() == "line 0\nline 1\nline 2\n"
    sandbox.assert_removed(spec.label)


def test_an_orphaned_run_stops_by_itself(sandbox: Sandbox, docker_client: Any) -> None:
    """A harness killed with SIGKILL cannot clean up; the run's own deadline still ends it."""
    executor = sandbox.executor()
    executor.orphan_grace_s = 1
    spec = sandbox.spec("import time\nprint('started', flush=True)\ntime.sleep(300)\n", time_limit_s=1)
    # What `run` does up to the start, and then nothing: the harness "died".
    container = docker_client.containers.create(**executor.container_config(spec))
    try:
        container.start()
        status = container.wait(timeout=30)
        assert status["StatusCode"] == 137  # SIGKILL from the in-container deadline
        assert b"started" in container.logs()
    finally:
        container.remove(force=True)


def test_prune_removes_leftovers_by_label(sandbox: Sandbox, docker_client: Any) -> None:
    label = "test-prune-leftover"
    docker_client.containers.create(sandbox.image, ["true"], labels={"speedrun": "1", "speedrun.run": label})
    assert len(sandbox.containers(label)) == 1
    assert prune_containers(docker_client, label=label) == 1
    sandbox.assert_removed(label)


def test_concurrent_runs_from_one_executor(sandbox: Sandbox) -> None:
    executor = sandbox.executor()
    specs = [sandbox.spec(f"print('run {k}')") for k in range(3)]
    results: dict[int, Any] = {}
    threads = [threading.Thread(target=lambda k=k: results.__setitem__(k, executor.run(specs[k]))) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for k, spec in enumerate(specs):
        assert results[k].ok
        assert spec.log_path.read_text() == f"run {k}\n"
        sandbox.assert_removed(spec.label)


# -- a real (tiny) training run ------------------------------------------------------------------

TRAIN = """
    import glob, os, time
    import numpy as np
    import torch

    def load(pattern):
        tokens = []
        for path in sorted(glob.glob(pattern)):
            header = np.fromfile(path, dtype=np.int32, count=256)
            assert header[0] == 20240520 and header[1] == 1, "bad shard header"
            tokens.append(np.fromfile(path, dtype=np.uint16, offset=256 * 4, count=int(header[2])))
        return torch.from_numpy(np.concatenate(tokens).astype(np.int64))

    torch.manual_seed(int(os.environ["SPEEDRUN_SEED"]))
    train = load(os.environ["NANOGPT_TRAIN_FILES"])
    val = load(os.environ["NANOGPT_VAL_FILES"])[: int(os.environ["NANOGPT_VAL_TOKENS"])]
    model = torch.nn.Embedding(256, 256)  # a bigram model: enough to train one real step
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    t0 = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(train[:-1]), train[1:])
    loss.backward()
    opt.step()
    train_ms = 1000 * (time.perf_counter() - t0)
    with torch.no_grad():
        val_loss = torch.nn.functional.cross_entropy(model(val[:-1]), val[1:]).item()
    torch.save(model.state_dict(), "model.pt")
    import os
    print("model.pt bytes", os.path.getsize("model.pt"))
    print(f"step:1/1 val_loss:{val_loss:.4f} train_time:{train_ms:.0f}ms step_avg:{train_ms:.2f}ms")
"""


def _write_shard(path: Path, tokens: np.ndarray) -> None:
    header = np.zeros(256, dtype=np.int32)
    header[:3] = [20240520, 1, tokens.size]
    path.write_bytes(header.tobytes() + tokens.astype(np.uint16).tobytes())


def test_tiny_torch_training_run(sandbox: Sandbox) -> None:
    text = np.frombuffer(b"to be, or not to be, that is the question. " * 200, dtype=np.uint8)
    _write_shard(sandbox.data_dir / "t_train_000000.bin", text[: len(text) // 2])
    _write_shard(sandbox.data_dir / "t_train_000001.bin", text[len(text) // 2 :])
    _write_shard(sandbox.data_dir / "t_val_000000.bin", text[:2000])
    env = {
        "NANOGPT_TRAIN_FILES": str(sandbox.data_dir / "t_train_*.bin"),
        "NANOGPT_VAL_FILES": str(sandbox.data_dir / "t_val_*.bin"),
        "NANOGPT_VAL_TOKENS": "1000",
        "SPEEDRUN_SEED": "0",
    }
    result, log, spec = sandbox.run(TRAIN, env=env, time_limit_s=120)
    assert result.ok, log
    parsed = parse_log(log)
    assert parsed.finished and parsed.step == parsed.total_steps == 1
    assert parsed.val_loss is not None and 0 < parsed.val_loss < np.log(256) + 1
    assert int(log.split("model.pt bytes ")[1].split()[0]) > 256 * 256 * 4
    assert not (spec.workspace / "model.pt").exists()


# -- the whole evaluation, in containers --------------------------------------------------------


def test_smoke_eval_mini_in_docker(sandbox: Sandbox, mini_data_dir: Path, tmp_path: Path) -> None:
    """`speedrun eval --track mini --task mini-0 --model oracle --executor docker` at a loose target:
    the calibration runs and the node's run train the real records in containers. (Confirmation
    re-runs are the same executor calls again, so they are left out to keep this short.)"""
    from harness.eval.config import EvalConfig
    from harness.eval.evaluate import evaluate
    from harness.manifests.tracks import load_track

    first = load_track("mini").tasks()[0].id
    cfg = EvalConfig(
        task=first,
        model="oracle",
        scaffold="flat",
        scaffold_args={"nodes": 1},
        executor="docker",
        executor_args={"image": sandbox.image},
        results_dir=tmp_path / "results",
        data_dir=mini_data_dir,
        target_val_loss=2.6,
        calibration_runs=1,
        confirm_runs=0,
    )
    info = evaluate(cfg)
    assert info.status == "finished", info.status_detail
    assert info.sandboxed and info.config.executor == "docker"
    assert info.score is not None and info.score.valid_nodes == 1
    log = (tmp_path / "results" / info.run_id / "nodes" / "0" / "run.log").read_text()
    assert " val_loss:" in log and "train_time:" in log
    sandbox.assert_removed(f"{info.run_id}/0")  # the node's container (labels are per run dir and node)


def test_the_harness_clocks_the_container(sandbox: Sandbox) -> None:
    """Wall time from the engine's own start and exit stamps, CPU time from the container's cgroup:
    both measured, whatever the script prints."""
    script = """
        import subprocess, sys, time
        subprocess.run([sys.executable, "-c", "import time\\nwhile time.process_time() < 0.6: pass"], check=True)
        print("step:1/1 val_loss:1.0 train_time:1ms step_avg:1.00ms", flush=True)
        time.sleep(1.5)  # the last CPU reading is taken while the container still runs
    """
    result, _, _ = sandbox.run(script)
    assert result.ok
    assert result.cpu_s is not None and result.cpu_s >= 0.5
    assert result.wall_s >= 1.5


def test_declared_outputs_come_back_from_the_held_container(sandbox: Sandbox) -> None:
    """The workspace is a tmpfs: once the command has ended (and everything else in the container
    is dead), only the declared outputs are copied out, regular files only, not through a link."""
    script = """
        import os, subprocess, sys
        open("model.bin", "wb").write(b"weights")
        os.symlink("/etc/hostname", "linked.bin")
        open("undeclared.bin", "wb").write(b"y")
        # A daemon that would rewrite the output after the command's end: it dies first.
        subprocess.Popen([sys.executable, "-c", "import time\\ntime.sleep(1)\\nopen('model.bin', 'wb').write(b'evil')"],
                         start_new_session=True)
        print("step:1/1 val_loss:1.0 train_time:1ms step_avg:1.00ms", flush=True)
    """
    spec = sandbox.spec(script)
    spec.outputs = ["model.bin", "linked.bin", "never-written.bin"]
    result = sandbox.executor().run(spec)
    sandbox.assert_removed(spec.label)
    assert result.ok, spec.log_path.read_text()
    assert (spec.workspace / "model.bin").read_bytes() == b"weights"
    assert not (spec.workspace / "linked.bin").exists() and not (spec.workspace / "undeclared.bin").exists()
    assert "step:1/1" in spec.log_path.read_text()
