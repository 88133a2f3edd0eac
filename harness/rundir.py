"""Reading a run directory back for display: bounded, read-only, never through a link.

A run directory holds what candidates left (a workspace, a log a script may have flooded)
and may still be written by a live run. So every read here opens each path component with
`O_NOFOLLOW` from the run directory down (a candidate that replaced `run.log` or `workspace`
by a link to /etc/shadow gets nothing read), takes regular files only, reads at most a
stated number of bytes, and never writes (unlike `Journal`, which repairs a cut last line).
What is read is parsed with the models that wrote it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pydantic import ValidationError

from harness.coder.transcript import TRANSCRIPT_JSONL, Exchange
from harness.eval.log import RUN_JSON, Confirmation, RunInfo
from harness.search.journal import JOURNAL, ActionKind, JournalEvent, Node
from harness.search.node import CODE_DIR, WORKSPACE_DIR

RUN_JSON_MAX = 4 << 20
JOURNAL_MAX = 64 << 20
TRANSCRIPT_MAX = 16 << 20
SOURCE_MAX = 1 << 20
DIFF_MAX = 1 << 20
#: A log parsed for its curve is read up to this much (the head and the tail, where the final line is).
LOG_PARSE_MAX = 32 << 20


@dataclass
class Bounded:
    """Text read from a file, and how many bytes of it were left out (from the middle)."""

    text: str
    cut: int = 0
    size: int = 0


def _open_dir(root: Path, parts: tuple[str, ...]) -> int:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        raise
    return fd


def _parts(rel: str | PurePosixPath) -> tuple[str, ...] | None:
    parts = PurePosixPath(rel).parts
    if not parts or any(p in ("", ".", "..") or "/" in p for p in parts) or PurePosixPath(rel).is_absolute():
        return None
    return parts


def read_bounded(root: Path, rel: str | PurePosixPath, max_bytes: int, *, head: int | None = None) -> Bounded | None:
    """`root/rel` as text if it is a regular file reached without a link; None otherwise.

    At most `max_bytes` are read: all of a file that fits, else `head` bytes from its start
    (default a quarter) and the rest from its end, with `cut` saying what was skipped.
    """
    parts = _parts(rel)
    if parts is None:
        return None
    try:
        dfd = _open_dir(root, parts[:-1])
    except OSError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
    except OSError:
        return None
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        size = info.st_size
        if size <= max_bytes:
            data, cut = fh.read(max_bytes), 0
        else:
            first = max_bytes // 4 if head is None else min(head, max_bytes)
            start = fh.read(first)
            fh.seek(size - (max_bytes - first))
            end = fh.read(max_bytes - first)
            data, cut = start + b"\n" + end, size - max_bytes
    return Bounded(data.decode("utf-8", errors="replace"), cut, size)


def is_run_dir(path: Path) -> bool:
    """A real directory (not a link) with a run.json."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode) and stat.S_ISREG(os.lstat(path / RUN_JSON).st_mode)
    except OSError:
        return False


def run_dirs(results_dir: Path) -> list[Path]:
    """The run directories directly under a results root, by name."""
    if not results_dir.is_dir():
        return []
    with os.scandir(results_dir) as entries:
        found = [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    return sorted(p for p in found if is_run_dir(p))


def read_run_info(run_dir: Path) -> RunInfo | None:
    got = read_bounded(run_dir, RUN_JSON, RUN_JSON_MAX)
    if got is None or got.cut:
        return None
    try:
        return RunInfo.model_validate_json(got.text)
    except ValidationError:
        return None


@dataclass
class JournalView:
    """The journal as a viewer needs it: finished nodes, and those started but not finished."""

    nodes: dict[int, Node] = field(default_factory=dict)
    started: dict[int, tuple[ActionKind, int | None]] = field(default_factory=dict)
    stopped: str | None = None

    @property
    def running(self) -> dict[int, tuple[ActionKind, int | None]]:
        return {k: v for k, v in sorted(self.started.items()) if k not in self.nodes}

    def all(self) -> list[Node]:
        return [self.nodes[k] for k in sorted(self.nodes)]


def read_journal(run_dir: Path) -> JournalView:
    """Replay `journal.jsonl` read-only (the last line may be half written by a live run)."""
    out = JournalView()
    got = read_bounded(run_dir, JOURNAL, JOURNAL_MAX, head=JOURNAL_MAX)
    if got is None:
        return out
    for line in got.text.splitlines():
        if not line.strip():
            continue
        try:
            ev = JournalEvent.model_validate_json(line)
        except ValidationError:
            continue
        if ev.event == "node" and ev.node is not None:
            out.nodes[ev.node.id] = ev.node
        elif ev.event == "started" and ev.node_id is not None and ev.action is not None:
            out.started[ev.node_id] = (ev.action, ev.parent)
        elif ev.event == "stopped":
            out.stopped = ev.detail
        elif ev.event == "resumed":
            out.stopped = None
    return out


def node_path(node_id: int, *rest: str) -> PurePosixPath:
    return PurePosixPath("nodes", str(node_id), *rest)


def read_exchanges(run_dir: Path, rel: PurePosixPath) -> list[Exchange]:
    """The model calls transcribed in `rel` (a node's or the scaffold's directory)."""
    got = read_bounded(run_dir, rel / TRANSCRIPT_JSONL, TRANSCRIPT_MAX, head=TRANSCRIPT_MAX)
    out: list[Exchange] = []
    for line in got.text.splitlines() if got else []:
        with contextlib.suppress(ValidationError):
            out.append(Exchange.model_validate_json(line))
    return out


def read_confirmation(run_dir: Path) -> Confirmation | None:
    got = read_bounded(run_dir, "confirm.json", RUN_JSON_MAX)
    if got is None or got.cut:
        return None
    try:
        return Confirmation.model_validate_json(got.text)
    except ValidationError:
        return None


def node_code(run_dir: Path, node_id: int, main_file: str) -> str | None:
    """The node's main script as the model wrote it (`code/`; runs from before it existed kept it
    only in the workspace). None when absent, linked or too large."""
    for folder in (CODE_DIR, WORKSPACE_DIR):
        got = read_bounded(run_dir, node_path(node_id, folder, *PurePosixPath(main_file).parts), SOURCE_MAX)
        if got is not None:
            return None if got.cut else got.text
    return None
