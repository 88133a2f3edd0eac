"""A bubblewrap sandbox for one local run: what the run sees, and nothing else.

The sandbox starts from an empty root and binds in, read-only, only what a training script
needs: the system (`/usr`, `/etc`, `/sys`), this Python's installation and site-packages, the
library paths, the track's data. Not bound, so absent: the results root, the caches (with the
calibration), the home directory (a fresh tmpfs instead), `/run` (the docker socket), `/var`,
and trees like the project's with its `.env`. The workspace is a tmpfs at the workspace's
path, filled from the node's files, so whatever the run writes vanishes with it; it, `/tmp`,
`/dev/shm` and home are size-limited, and their file counts capped. New namespaces for all
but the users (no network; its own PIDs, so `/proc/$PPID` is not the harness), a new session,
a seccomp filter (`seccomp.py`), and the run dies with its sandbox and with the harness.

As root, bubblewrap runs privileged and the launcher (`limits.py`), as the sandbox's PID 1,
caps the tmpfs file counts, drops to a user of the run's own (one per concurrent run) and with
it every capability, loads the filter and starts the command: root-only files on the host stay
unreadable even where they are bound. As another user, bubblewrap runs unprivileged in a user
namespace; the run has that user's rights on what is bound, and the executor watches the file
counts instead of capping them.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass, field
from pathlib import Path

from harness.confine import read_confined, relpath_problem, walk_regular, write_confined
from harness.execution import seccomp
from harness.execution.base import MAX_OUTPUT_BYTES
from harness.execution.limits import Launch

#: System trees bound read-only; a tree that is a link on the host (merged /usr) stays a link.
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")
#: As root, each concurrent run gets its own uid from this range (no passwd entry, no files).
UID_BASE = 2_147_000_000
UID_POOL = 256
#: A workspace holds the node's code, not data: at most this many files are copied in.
MAX_SEED_FILES = 200
#: How long PID 1 keeps a finished run's sandbox for the harness to copy the outputs out.
HOLD_S = 600


@functools.cache
def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def privileged() -> bool:
    return os.geteuid() == 0


def _namespace_flags() -> list[str]:
    if privileged():
        # No user namespace: root sets the sandbox up, the launcher then drops to the run's user.
        return ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    return ["--unshare-all", "--disable-userns"]


@functools.cache
def unavailable() -> str | None:
    """Why bubblewrap cannot sandbox runs here (not installed, no user namespaces), or None."""
    exe = bwrap_path()
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [
        exe,
        *_namespace_flags(),
        *_system_binds(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(1 << 20),
        "--tmpfs",
        "/tmp",
        "--die-with-parent",
        "--",
        "true",
    ]
    try:
        proc = subprocess.run(probe, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not start: {exc}"
    if proc.returncode != 0:
        reason = (proc.stderr or proc.stdout).strip().splitlines()
        return f"bwrap cannot make a sandbox here: {reason[-1] if reason else f'exit {proc.returncode}'}"
    return None


def version() -> str:
    exe = bwrap_path()
    if exe is None:
        return ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    return ""


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def python_paths() -> list[Path]:
    """What this interpreter needs to run: its installation and every site-packages it reads."""
    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()]
    paths += [sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")]
    return [Path(p) for p in paths if p]


class _Uids:
    """Uids handed to concurrent runs, so that no two share one (RLIMIT_NPROC counts per user)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[int] = set()

    def take(self) -> int:
        with self._lock:
            for uid in range(UID_BASE, UID_BASE + UID_POOL):
                if uid not in self._used:
                    self._used.add(uid)
                    return uid
        raise RuntimeError(f"more than {UID_POOL} sandboxed runs at once")

    def give(self, uid: int) -> None:
        with self._lock:
            self._used.discard(uid)


UIDS = _Uids()


@dataclass
class Plan:
    """The bwrap command line of one run, and the descriptors it reads (closed after the start)."""

    argv: list[str]
    fds: list[int] = field(default_factory=list)
    #: Paths inside the sandbox whose tmpfs file counts are watched.
    watched: list[str] = field(default_factory=list)
    info_fd: int | None = None
    #: The harness's end of PID 1's lifeline: closing it ends the sandbox.
    lifeline: int | None = None
    #: Where PID 1 reports the command's exit status, once everything else in the sandbox is dead.
    done_fd: int | None = None
    uid: int | None = None

    def close_fds(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

    def release(self) -> None:
        self.close_fds()
        for fd in (self.info_fd, self.lifeline, self.done_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.info_fd = self.lifeline = self.done_fd = None
        if self.uid is not None:
            UIDS.give(self.uid)
            self.uid = None


class _Mounts:
    """bwrap arguments in mount order, making each mount point's parents traversable."""

    def __init__(self) -> None:
        self.args: list[str] = []
        #: Read-only binds: what lies below one is already visible and cannot be made.
        self.bound: list[Path] = []
        #: Directories that exist in the sandbox already (made, or mount points).
        self.made: set[Path] = {Path("/")}
        #: The writable tmpfs mounts, with their sizes.
        self.tmpfs_mounts: list[tuple[Path, int | None]] = []

    def covered(self, path: Path) -> bool:
        return any(path == b or b in path.parents for b in self.bound)

    def parents(self, path: Path) -> None:
        # Directories bwrap would make on its own get mode 0700 and root as owner.
        for parent in reversed(path.parents):
            if parent in self.made or self.covered(parent):
                continue
            self.args += ["--perms", "0755", "--dir", str(parent)]
            self.made.add(parent)

    def ro_bind(self, path: Path) -> None:
        if self.covered(path) or not path.exists():
            return
        self.parents(path)
        self.args += ["--ro-bind", str(path), str(path)]
        self.bound.append(path)

    def tmpfs(self, path: Path, size: int | None, perms: str) -> None:
        self.parents(path)
        if size is not None:
            self.args += ["--size", str(size)]
        self.args += ["--perms", perms, "--tmpfs", str(path)]
        self.made.add(path)
        self.tmpfs_mounts.append((path, size))


def plan(
    command: list[str],
    workspace: Path,
    *,
    data_dir: Path | None,
    launch: Launch,
    workspace_size: int | None,
    workspace_files: int | None,
    tmpfs_size: int | None,
    ro_paths: list[Path],
) -> Plan:
    """The sandbox for one run. `launch` is completed here with the run's own uid (as root)."""
    exe = bwrap_path()
    assert exe is not None, "check unavailable() first"
    m = _Mounts()
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            m.args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            m.ro_bind(Path(path))
    m.args += ["--dev", "/dev", "--proc", "/proc"]
    m.made |= {Path("/dev"), Path("/proc")}
    # The GPUs, whether or not this run asked for some: which ones it sees is
    # CUDA_VISIBLE_DEVICES's business, and a run without `--gpus` may still use all.
    for dev in sorted(Path("/dev").glob("nvidia*")):
        m.args += ["--dev-bind", str(dev), str(dev)]
    m.tmpfs(Path("/dev/shm"), tmpfs_size, "1777")
    m.tmpfs(Path("/tmp"), tmpfs_size, "1777")
    home = Path(os.environ.get("HOME") or "/nonexistent")
    if home.is_absolute() and not m.covered(home) and home != Path("/"):
        m.tmpfs(home, tmpfs_size, "0777")
    extra = [*python_paths(), *ro_paths]
    extra += [Path(p) for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p.startswith("/")]
    if cuda := os.environ.get("CUDA_HOME"):
        extra.append(Path(cuda))
    if os.path.isabs(command[0]):
        extra.append(Path(command[0]).parent)
    for tree in sorted({p for p in extra if p.is_absolute()}, key=lambda p: len(p.parts)):
        m.ro_bind(tree)
    if data_dir is not None:
        m.ro_bind(data_dir.resolve())
    ws = workspace.resolve()
    m.tmpfs(ws, workspace_size, "0777")
    fds: list[int] = []
    try:
        for file in list(walk_regular(ws, MAX_SEED_FILES)):
            name = file.relative_to(ws).as_posix()
            if relpath_problem(name):
                continue
            for parent in reversed(Path(name).parents):
                if str(parent) != "." and (ws / parent) not in m.made:
                    m.args += ["--perms", "0777", "--dir", str(ws / parent)]
                    m.made.add(ws / parent)
            fd = os.open(file, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            fds.append(fd)
            m.args += ["--perms", "0666", "--file", str(fd), str(ws / name)]
        info_r, info_w = os.pipe()
        life_r, life_w = os.pipe()
        done_r, done_w = os.pipe()
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    fds += [info_w, life_r, done_w]
    program = seccomp.bpf_program()
    uid = UIDS.take() if privileged() else None
    # As root the launcher caps each tmpfs's file count (a remount) before it drops to the run's
    # user; unprivileged it cannot, and the executor watches the count instead.
    remount: tuple[tuple[str, str], ...] = ()
    if privileged() and workspace_files is not None:
        remount = tuple(
            (str(path), (f"size={size}," if size is not None else "") + f"nr_inodes={workspace_files}")
            for path, size in m.tmpfs_mounts
        )
    launch_as = Launch(
        **{
            **launch.__dict__,
            "uid": uid,
            "gid": uid,
            "reaper": True,
            "lifeline": life_r,
            "done_fd": done_w,
            "hold_s": HOLD_S,
            "remount": remount,
            "seccomp": program.hex() if program is not None else None,
        }
    )
    caps: list[str] = []
    if privileged():
        caps = [arg for cap in ("CAP_SYS_ADMIN", "CAP_SETUID", "CAP_SETGID") for arg in ("--cap-add", cap)]
    argv = [
        exe,
        *_namespace_flags(),
        "--die-with-parent",
        "--new-session",
        # The launcher is PID 1 and reaps, and bwrap then waits for it: rusage of the whole tree.
        "--as-pid-1",
        "--hostname",
        "localhost",
        *m.args,
        "--remount-ro",
        "/",
        "--chdir",
        str(ws),
        "--info-fd",
        str(info_w),
        *caps,
        "--",
        *launch_as.argv(sys.executable, command),
    ]
    watched = [] if remount or workspace_files is None else [str(path) for path, _ in m.tmpfs_mounts]
    return Plan(argv=argv, fds=fds, watched=watched, info_fd=info_r, lifeline=life_w, done_fd=done_r, uid=uid)


def read_child_pid(info_fd: int, timeout_s: float = 10.0) -> int | None:
    """The host pid of the sandbox's PID 1, from bwrap's `--info-fd` JSON."""
    import select

    buf = b""
    ready, _, _ = select.select([info_fd], [], [], timeout_s)
    while ready:
        chunk = os.read(info_fd, 4096)
        if not chunk:
            break
        buf += chunk
        with contextlib.suppress(ValueError):
            return int(json.loads(buf)["child-pid"])
        ready, _, _ = select.select([info_fd], [], [], timeout_s)
    with contextlib.suppress(ValueError, KeyError):
        return int(json.loads(buf)["child-pid"])
    return None


def files_in_use(child_pid: int, mounts: list[str]) -> int | None:
    """Inodes in use on the sandbox's tmpfs mounts, seen through its PID 1's root: the file count
    that a size limit alone does not bound. None once the sandbox is gone."""
    total = 0
    for mount in mounts:
        try:
            st = os.statvfs(f"/proc/{child_pid}/root{mount}")
        except OSError:
            return None
        total += st.f_files - st.f_ffree
    return total


def fetch_outputs(child_pid: int, workspace: Path, names: list[str], dest: Path) -> list[str]:
    """Copy a finished run's declared outputs out of its sandbox (through its PID 1's root) into
    `dest`: each reached without following a link, a regular file, at most MAX_OUTPUT_BYTES.
    Returns the names copied; an output the run did not make is not an error here."""
    copied = []
    under = workspace.resolve().parts[1:]
    for name in names:
        data = read_confined(Path(f"/proc/{child_pid}/root"), name, MAX_OUTPUT_BYTES, under=under, follow_root=True)
        if data is not None:
            write_confined(dest, name, data)
            copied.append(name)
    return copied
