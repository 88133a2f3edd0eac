"""Resource limits of a local run, and the few lines of Python that apply them before the candidate.

The launcher runs in the run's own process, after the sandbox is set up and before the
candidate's command: it drops to the sandbox's user (when the harness is root), pins the CPUs,
sets the rlimits and `exec`s the command. It is harness code passed with `python -I -S -c`, so
nothing of the candidate's (a `sitecustomize.py`, a `.pth`) runs before it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from harness.errors import ConfigError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int | float | None, what: str) -> int | None:
    """`8g`, `512m`, `1048576` as bytes; `none` (or None) as no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    if isinstance(value, int | float):
        return int(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*", value.lower())
    if not match:
        raise ConfigError(f"{what} must be a size like 512m or 8g (or none), got {value!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def parse_count(value: str | int | None, what: str) -> int | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a whole number (or none), got {value!r}") from None
    if count <= 0:
        raise ConfigError(f"{what} must be positive, got {value!r}")
    return count


@dataclass(frozen=True)
class Launch:
    """What the launcher does before it becomes the candidate's command."""

    #: Address space (RLIMIT_AS): off for GPU runs, whose drivers map far more than they use.
    memory: int | None = None
    #: Processes and threads of the run's user (RLIMIT_NPROC); only meaningful for a user of its own.
    pids: int | None = None
    #: Largest file the run may write (RLIMIT_FSIZE).
    file_size: int | None = None
    #: CPU seconds of any one process (RLIMIT_CPU): a backstop should the wall clock fail.
    cpu_s: int | None = None
    #: Cores to pin the run to (`0`, `0-3`, `0,2`).
    cpuset: str | None = None
    #: Drop to this uid/gid (the harness is root and the run gets a user of its own).
    uid: int | None = None
    gid: int | None = None
    #: Stay as the sandbox's PID 1 and reap: the command runs as its child, every orphan is
    #: waited for (so its CPU time is counted), and the exit is the command's.
    reaper: bool = False
    #: With `reaper`: a descriptor whose end of file (its writer closed) makes PID 1 end the sandbox.
    lifeline: int | None = None
    #: tmpfs mounts to remount with these options (a file-count cap) while still privileged.
    remount: tuple[tuple[str, str], ...] = ()
    #: A classic-BPF seccomp filter (hex), loaded after the remount and the switch of user.
    seccomp: str | None = None
    #: With `reaper`, once the command has exited: kill everything else, report (write the exit
    #: status to `done_fd`; close the output, whose end is then the report), and hold the sandbox
    #: (its tmpfs workspace) this long for the harness to copy the declared outputs out; the
    #: harness ends the hold by closing the lifeline or with SIGTERM.
    hold_s: float | None = None
    done_fd: int | None = None
    close_output: bool = False
    #: Copy the regular files under the first directory into the second (the workspace) before
    #: the command starts, as the run's user.
    seed: tuple[str, str] | None = None
    #: The command's stderr joins its stdout (one pipe keeps the order lines were written in).
    merge_stderr: bool = False
    #: Kill the command this long after it started: a backstop should the harness be gone.
    backstop_s: int | None = None

    def argv(self, python: str, command: list[str]) -> list[str]:
        return [python, "-I", "-S", "-c", _LAUNCHER, json.dumps(asdict(self)), *command]


#: The name (comm) the launcher takes once it holds a finished run's sandbox, alone in it.
HELD_NAME = "speedrun-held"


def cpu_list(cpuset: str) -> list[int]:
    """`0-2,5` -> [0, 1, 2, 5]."""
    if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cpuset):
        raise ConfigError(f"cpuset must list cores like 0 or 0-3 or 0,2, got {cpuset!r}")
    out: list[int] = []
    for part in cpuset.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


# Kept to the standard library and to this one string: it runs with `-I -S`.
_LAUNCHER = r"""
import ctypes, json, os, resource, shutil, signal, sys
HELD = b"speedrun-held"
cfg = json.loads(sys.argv[1])
command = sys.argv[2:]
libc = ctypes.CDLL(None, use_errno=True)
def fail(what):
    sys.stderr.write(f"speedrun sandbox: {what}: {os.strerror(ctypes.get_errno())}\n")
    os._exit(125)
def limit(kind, value):
    if value is not None:
        resource.setrlimit(kind, (value, value))
if cfg["cpuset"]:
    cores = []
    for part in cfg["cpuset"].split(","):
        lo, _, hi = part.partition("-")
        cores.extend(range(int(lo), int(hi or lo) + 1))
    os.sched_setaffinity(0, cores)
limit(resource.RLIMIT_CORE, 0)
limit(resource.RLIMIT_AS, cfg["memory"])
limit(resource.RLIMIT_FSIZE, cfg["file_size"])
limit(resource.RLIMIT_CPU, cfg["cpu_s"])
# A file-count cap on each tmpfs (bwrap can only size them), while the rights to do it last.
for path, options in cfg["remount"]:
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", 32 | 2 | 4, options.encode()) != 0:  # REMOUNT|NOSUID|NODEV
        fail(f"cannot limit {path}")
if cfg["uid"] is not None:
    os.setgroups([])
    os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
    os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])  # and with it every capability goes
    # A user with no passwd entry: tools that ask for a name (getpass) read these first.
    os.environ["USER"] = os.environ["LOGNAME"] = "speedrun"
if cfg["seccomp"]:
    program = bytes.fromhex(cfg["seccomp"])
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]
    prog = Prog(len(program) // 8, program)
    if libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        fail("cannot load the seccomp filter")
if cfg["reaper"]:
    # No ptrace of PID 1 (and no reading its memory or descriptors) by the run, though it is
    # the same user.
    libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
# After the switch: RLIMIT_NPROC counts the processes of the user the run now is.
limit(resource.RLIMIT_NPROC, cfg["pids"])
private = [fd for fd in (cfg["lifeline"], cfg["done_fd"]) if fd is not None]
def run():
    for fd in private:
        os.close(fd)
    if cfg["seed"]:
        src, dest = cfg["seed"]
        for dirpath, _dirs, files in os.walk(src):
            rel = os.path.relpath(dirpath, src)
            os.makedirs(os.path.join(dest, rel), exist_ok=True)
            for name in files:
                shutil.copyfile(os.path.join(dirpath, name), os.path.join(dest, rel, name), follow_symlinks=False)
        os.chdir(dest)
    if cfg["merge_stderr"]:
        os.dup2(1, 2)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"speedrun sandbox: cannot run {command[0]!r}: {exc.strerror}\n")
        os._exit(127)
if not cfg["reaper"]:
    run()
import threading
final = []  # the command's exit status, once it has one
def end(code=None):
    os._exit(final[0] if final else (code if code is not None else 137))
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(sig, lambda s, _f: end(128 + s))
child = os.fork()
if child == 0:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    run()
if cfg["backstop_s"]:
    def backstop(_s, _f):
        try:
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(137)
    signal.signal(signal.SIGALRM, backstop)
    signal.alarm(cfg["backstop_s"])
if cfg["lifeline"] is not None:
    def watch():
        # The harness holds the other end: when it closes (the run is over, or the harness
        # died), PID 1 exits and the kernel kills everything left in the sandbox. A parent-death
        # signal cannot do this: bwrap, dropping its rights, may not signal a user of its own.
        try:
            os.read(cfg["lifeline"], 1)
        finally:
            end()
    threading.Thread(target=watch, daemon=True).start()
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        end(1)
    except InterruptedError:
        continue
    if pid == child:
        code = os.waitstatus_to_exitcode(status)
        break
code = code if code >= 0 else 128 - code
if cfg["hold_s"] is None:
    os._exit(code)
signal.alarm(0)
# Nothing of the run may outlive it: every process of the sandbox but this one is killed and
# reaped; only then is the end reported and the workspace handed over.
try:
    os.kill(-1, signal.SIGKILL)
except ProcessLookupError:
    pass  # none left
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
    except InterruptedError:
        continue
final.append(code)
if cfg["done_fd"] is not None:
    os.write(cfg["done_fd"], f"{code}\n".encode())
    os.close(cfg["done_fd"])
if cfg["close_output"]:
    for fd in (0, 1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
# Seen from outside (`ps -o comm`): only this process may set its own name, not the run.
libc.prctl(15, HELD, 0, 0, 0)  # PR_SET_NAME
signal.signal(signal.SIGALRM, lambda _s, _f: end())
signal.alarm(max(1, int(cfg["hold_s"])))
while True:
    signal.pause()
"""
