"""How much of the human change a candidate reproduced: a deterministic score, no LLM.

The human change is record i+1 against record i; the candidate's is its own code against
record i (not against its parent: a node three improvements deep is judged on all of it).
Both are compared as *code lines*: whitespace is collapsed, blank lines, comments and
docstrings are dropped (an agent that implements the idea is not expected to write the
record's prose), then the changed lines are diffed. A changed line is a pair (`-` or `+`,
text); the score is the share of the human change's pairs that the candidate's change also
has (as multisets), and the hunk share counts the human hunks whose every pair it has.

    oracle (its code is record i+1)  -> 1.0
    null (no change)                 -> 0.0
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import tokenize
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pydantic import BaseModel

from harness.audit import parse
from harness.errors import SpeedrunError
from harness.eval.calibration import REFERENCES_DIR
from harness.eval.log import RunInfo
from harness.manifests.tracks import Record, get_task, load_track
from harness.rundir import SOURCE_MAX, node_code, read_bounded

Change = tuple[str, str]


class Similarity(BaseModel):
    """A candidate's change measured against the human one."""

    schema_version: int = 1
    #: Share of the human change's lines the candidate's change has (None: the human change is empty).
    lines: float | None
    #: Share of the human change's hunks reproduced whole.
    hunks: float | None
    human_lines: int
    matched_lines: int
    human_hunks: int
    matched_hunks: int
    #: Changed lines of the candidate that are not in the human change.
    extra_lines: int


_SPACE = re.compile(r"\s+")


def _docstring_lines(source: str) -> set[int]:
    """1-based line numbers of the module's, classes' and functions' docstrings."""
    tree = parse(source)
    if isinstance(tree, SyntaxError):
        return set()
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                out.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return out


def _without_comments(source: str) -> list[str]:
    """The source's lines with `#` comments removed (by the tokenizer, so a `#` in a string stays)."""
    lines = source.splitlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return lines  # not Python (or cut short): compare it with its comments
    # Cut from the right so earlier columns stay valid.
    for tok in sorted((t for t in tokens if t.type == tokenize.COMMENT), key=lambda t: t.start, reverse=True):
        row, col = tok.start
        if row - 1 < len(lines):
            lines[row - 1] = lines[row - 1][:col]
    return lines


def code_lines(source: str) -> list[str]:
    """The lines that carry code, whitespace-normalised: what both changes are compared on."""
    skip = _docstring_lines(source)
    out = []
    for number, line in enumerate(_without_comments(source), start=1):
        text = _SPACE.sub(" ", line).strip()
        if text and number not in skip:
            out.append(text)
    return out


def changes(old: str, new: str) -> list[list[Change]]:
    """The hunks of changed code lines from `old` to `new`, each a list of (sign, line)."""
    a, b = code_lines(old), code_lines(new)
    hunks: list[list[Change]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            hunks.append([("-", line) for line in a[i1:i2]] + [("+", line) for line in b[j1:j2]])
    return hunks


def similarity(record_code: str, next_record_code: str, candidate_code: str) -> Similarity:
    """How much of the change from record i to record i+1 the candidate's code makes."""
    human = changes(record_code, next_record_code)
    mine = Counter(c for hunk in changes(record_code, candidate_code) for c in hunk)
    wanted = Counter(c for hunk in human for c in hunk)
    matched = sum((wanted & mine).values())
    whole = sum(1 for hunk in human if not Counter(hunk) - mine)
    n_lines, n_hunks = sum(wanted.values()), len(human)
    return Similarity(
        lines=matched / n_lines if n_lines else None,
        hunks=whole / n_hunks if n_hunks else None,
        human_lines=n_lines,
        matched_lines=matched,
        human_hunks=n_hunks,
        matched_hunks=whole,
        extra_lines=sum((mine - wanted).values()),
    )


# ---- applied to a run ----------------------------------------------------------------------


@dataclass
class TaskRecords:
    """Record i and i+1 of a run's task, as far as this machine's manifests have them (a
    fetched track that is not fetched here has ids but no code)."""

    from_id: str
    to_id: str
    main_file: str = "train.py"
    from_code: str | None = None
    to_code: str | None = None


def _code(record: Record) -> str | None:
    try:
        return record.code()
    except SpeedrunError:
        return None


def task_records(info: RunInfo, run_dir: Path | None = None) -> TaskRecords:
    """The run's records: the copies it kept (`references/<record>/`, what it was measured
    against), else this checkout's manifests."""
    try:
        task = get_task(info.config.task)
        track = load_track(task.track)
        a, b = track.record(task.from_record), track.record(task.to_record)
        out = TaskRecords(a.id, b.id, a.script, _code(a), _code(b))
    except SpeedrunError:
        ref = info.score.reference if info.score else None
        out = TaskRecords(ref.from_record if ref else "record i", ref.to_record if ref else "record i+1")
    if run_dir is not None:
        kept = [
            read_bounded(run_dir, PurePosixPath(REFERENCES_DIR, rid, out.main_file), SOURCE_MAX)
            for rid in (out.from_id, out.to_id)
        ]
        if kept[0] is not None and not kept[0].cut:
            out.from_code = kept[0].text
        if kept[1] is not None and not kept[1].cut:
            out.to_code = kept[1].text
    return out


def record_diff(records: TaskRecords, code: str | None) -> str | None:
    """`code` against record i, as a unified diff (None without either)."""
    if records.from_code is None or code is None:
        return None
    return "".join(
        difflib.unified_diff(
            records.from_code.splitlines(keepends=True),
            code.splitlines(keepends=True),
            f"{records.from_id}/{records.main_file}",
            f"node/{records.main_file}",
        )
    )


def node_similarity(run_dir: Path, records: TaskRecords, node_id: int) -> Similarity | None:
    """A node's similarity to the human change; None without its code or the records' code."""
    code = node_code(run_dir, node_id, records.main_file)
    if code is None or records.from_code is None or records.to_code is None:
        return None
    return similarity(records.from_code, records.to_code, code)
