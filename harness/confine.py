"""Paths chosen by a model or touched by a candidate: confined, never followed, bounded.

The harness often runs with more rights than a candidate should have (root on a cluster node,
beside a Docker engine), so every name a model chose and every file a run may have touched is
handled here: a name must be a short, normalised, relative path that stays inside its root;
files are opened without following symbolic links at any component, and read up to a cap.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

#: Longest file name a model may choose (characters), and how deep it may nest.
MAX_NAME_CHARS = 200
MAX_DEPTH = 8
_NOFOLLOW = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


class PathRefused(ValueError):
    """A path that is not allowed where it was asked for; the message says why."""


def relpath_problem(name: str) -> str | None:
    """Why `name` cannot be a file inside a workspace, or None when it can."""
    if not name or not name.strip():
        return "the file name is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"the file name is longer than {MAX_NAME_CHARS} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name) or "\\" in name:
        return "the file name holds control characters or backslashes"
    if name.startswith(("/", "~")) or (len(name) > 1 and name[1] == ":"):
        return "the file name must be relative to the workspace, not absolute"
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "the file name must be a plain relative path (no '..', '.', or empty parts)"
    if len(parts) > MAX_DEPTH:
        return f"the file name nests deeper than {MAX_DEPTH} directories"
    return None


def check_relpath(name: str) -> str:
    """`name` if it is a confined relative path, else PathRefused with the reason."""
    if problem := relpath_problem(name):
        raise PathRefused(f"{name[:80]!r}: {problem}")
    return str(PurePosixPath(name))


def _open_dir(root: Path, parts: list[str], *, create: bool, follow_root: bool = False) -> int:
    """A descriptor of root/parts..., walked one component at a time without following links
    (`root` itself is followed with `follow_root`, for a /proc/<pid>/root)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | (os.O_CLOEXEC if follow_root else _NOFOLLOW))
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_confined(root: Path, name: str, data: bytes) -> None:
    """Create root/name with `data`; refuses names outside root and links anywhere on the way."""
    parts = check_relpath(name).split("/")
    dir_fd = _open_dir(root, parts[:-1], create=True)
    try:
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o644, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def read_confined(
    root: Path, name: str, max_bytes: int, *, under: tuple[str, ...] = (), follow_root: bool = False
) -> bytes | None:
    """The bytes of root/under.../name, a regular file reached without following a link at any
    component below `root`, or None (absent, a link, not regular, larger than `max_bytes`)."""
    if relpath_problem(name):
        return None
    parts = name.split("/")
    try:
        dir_fd = _open_dir(root, [*under, *parts[:-1]], create=False, follow_root=follow_root)
    except OSError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | _NOFOLLOW | _NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        data = fh.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


def _open_regular(path: Path) -> int | None:
    """A read descriptor of a regular file that is not a link (checked on the handle), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def read_bounded(path: Path, max_bytes: int) -> bytes | None:
    """The bytes of a regular file (not a link, a fifo or a device), or None if it is none or
    larger than `max_bytes`. Checked on the open handle, so a swap after the check is no use."""
    fd = _open_regular(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        if os.fstat(fh.fileno()).st_size > max_bytes:
            return None
        data = fh.read(max_bytes + 1)
    return data if len(data) <= max_bytes else None


def read_tail(path: Path, max_bytes: int) -> bytes:
    """The last `max_bytes` of a regular file, not followed through a link (b"" otherwise)."""
    fd = _open_regular(path)
    if fd is None:
        return b""
    with os.fdopen(fd, "rb") as fh:
        fh.seek(max(0, os.fstat(fh.fileno()).st_size - max_bytes))
        return fh.read(max_bytes)


def walk_regular(root: Path, max_files: int) -> Iterator[Path]:
    """Regular files under `root`, at most `max_files`, never descending into linked directories."""
    if root.is_symlink() or not root.is_dir():
        return
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                yield path
                seen += 1
                if seen >= max_files:
                    return


def strip_special_bits(root: Path, max_entries: int = 100_000) -> int:
    """Clear setuid, setgid and world-write bits under `root` (what a run left behind must not
    be a way in for whoever opens the results later). Links are not followed. Returns the count."""
    if root.is_symlink() or not root.is_dir():
        return 0
    changed = 0
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            seen += 1
            if seen > max_entries:
                return changed
            with contextlib.suppress(OSError):
                # On the open handle: a file swapped for a link meanwhile is not followed.
                fd = os.open(Path(dirpath) / name, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
                try:
                    mode = os.fstat(fd).st_mode
                    bad = mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH)
                    if bad:
                        os.fchmod(fd, stat.S_IMODE(mode) & ~bad)
                        changed += 1
                finally:
                    os.close(fd)
    return changed
