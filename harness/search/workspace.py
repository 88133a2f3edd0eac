"""Reading back what a candidate left in its workspace.

After a run the workspace holds whatever the candidate's code wrote, and the harness reads
it with the harness's rights (root, on a cluster node or beside a Docker engine). So only
regular files are read, never through a symbolic link: a script could otherwise link
`train.py` to a key file or to /etc/shadow and have it copied into the results and sent to
the model as "the candidate's code".
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

SOURCE_SUFFIXES = (".py", ".txt", ".json", ".toml", ".yaml", ".cfg", ".sh")
MAX_SOURCE_BYTES = 1 << 20  # a source file larger than this is output, not code


def _walk(root: Path) -> list[Path]:
    """Regular files under root, without descending into linked directories."""
    found: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames:
            path = Path(dirpath) / name
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                found.append(path)
    return sorted(found)


def _read_regular(path: Path, max_bytes: int) -> str | None:
    """The file's text, or None if it is not a small regular UTF-8 file (checked on the open handle)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > max_bytes:
            return None
        data = fh.read(max_bytes + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def source_files(
    workspace: Path, suffixes: tuple[str, ...] | None = SOURCE_SUFFIXES, max_bytes: int = MAX_SOURCE_BYTES
) -> dict[str, str]:
    """{relative path: text} of the workspace's regular text files; links and binaries are skipped.

    `suffixes=None` takes every text file (a confirmation run re-creates the whole workspace).
    """
    out: dict[str, str] = {}
    if not workspace.is_dir() or workspace.is_symlink():
        return out
    for path in _walk(workspace):
        if suffixes is not None and path.suffix not in suffixes:
            continue
        text = _read_regular(path, max_bytes)
        if text is not None:
            out[str(path.relative_to(workspace))] = text
    return out


def write_files(root: Path, files: dict[str, str]) -> None:
    """Lay `files` out under `root` (created fresh); a name that leaves `root` is refused."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    base = root.resolve()
    for name, text in files.items():
        path = (root / name).resolve()
        if not path.is_relative_to(base) or path == base:
            raise ValueError(f"file name {name!r} is outside the workspace")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
