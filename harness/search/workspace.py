"""Files of a node on disk: laid out for a run, and read back with care.

A node's code is saved when the model writes it (`search/node.py`: `nodes/<n>/code/`) and the
run happens in a scratch copy, so the harness reads no workspace a run could have changed,
except an older run's (before `code/` existed). Reading is careful anyway, because the harness
may run with more rights than the candidate: only small regular text files, never through a
symbolic link, at most `MAX_FILES` of them; and writing never leaves its root, never through a
link (`harness/confine.py`).
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


__all__ = ["MAX_FILES", "PathRefused", "source_files", "write_files"]
