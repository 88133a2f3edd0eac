"""A node's code, and the workspace it runs in.

A node's code is what the model wrote: the engine saves it in `nodes/<n>/code/` when the node
is coded, and that copy is the only source for the node's children, its diff, its rule checks
and its confirmation. The workspace is scratch, made from that copy for the run; whatever the
run does to it (edit its own script, replace it by a link to a key file, delete it, fill it
with files) changes nothing the harness reads.

Reading is still careful, because older runs (before code/ existed) are read from their
workspace, and because the harness may run with more rights than the candidate: only small
regular text files, never through a symbolic link, at most `MAX_FILES` of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.confine import PathRefused, read_bounded, relpath_problem, walk_regular, write_confined

SOURCE_SUFFIXES = (".py", ".txt", ".json", ".toml", ".yaml", ".cfg", ".sh")
MAX_SOURCE_BYTES = 1 << 20  # a source file larger than this is output, not code
#: At most this many files are read back from a directory, and this many bytes in all.
MAX_FILES = 200
MAX_TOTAL_BYTES = 8 << 20
#: Where a node's code is saved, in its node directory.
CODE_DIR = "code"
WORKSPACE_DIR = "workspace"


def source_files(
    workspace: Path,
    suffixes: tuple[str, ...] | None = SOURCE_SUFFIXES,
    max_bytes: int = MAX_SOURCE_BYTES,
    max_files: int = MAX_FILES,
) -> dict[str, str]:
    """{relative path: text} of a directory's regular text files; links and binaries are skipped.

    `suffixes=None` takes every text file. Bounded: at most `max_files` files (the walk itself
    stops after ten times as many) and `MAX_TOTAL_BYTES` in all.
    """
    out: dict[str, str] = {}
    total = 0
    for path in walk_regular(workspace, max_files * 10):
        if suffixes is not None and path.suffix not in suffixes:
            continue
        name = path.relative_to(workspace).as_posix()
        if relpath_problem(name):
            continue
        data = read_bounded(path, max_bytes)
        if data is None or total + len(data) > MAX_TOTAL_BYTES:
            continue
        try:
            out[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        total += len(data)
        if len(out) >= max_files:
            break
    return out


def write_files(root: Path, files: dict[str, str]) -> None:
    """Write `files` under `root` (made fresh); a name that leaves root raises PathRefused."""
    if root.is_symlink():
        root.unlink()
    elif root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for name, text in files.items():
        write_confined(root, name, text.encode("utf-8"))


def save_code(node_dir: Path, files: dict[str, str]) -> None:
    """Keep a node's code as the model wrote it: `node_dir/code/`, out of any run's reach."""
    tmp = node_dir / (CODE_DIR + ".tmp")
    write_files(tmp, files)
    final = node_dir / CODE_DIR
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def node_code(node_dir: Path) -> dict[str, str]:
    """A node's code: its saved copy; for a node of an older run that has none, its workspace."""
    saved = node_dir / CODE_DIR
    if saved.is_dir() and not saved.is_symlink():
        return source_files(saved, suffixes=None)
    return source_files(node_dir / WORKSPACE_DIR)


__all__ = [
    "CODE_DIR",
    "MAX_FILES",
    "PathRefused",
    "node_code",
    "save_code",
    "source_files",
    "write_files",
]
