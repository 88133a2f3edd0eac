"""The edit protocol: SEARCH/REPLACE blocks (or one whole file) parsed from a model's answer.

    train.py
    <<<<<<< SEARCH
    exact lines from the current file
    =======
    the lines that replace them
    >>>>>>> REPLACE

A SEARCH part must match exactly once. When it matches nowhere, a match that ignores
indentation and trailing spaces is tried second, then one that also ignores blank lines, and
the note says so. Answers in other formats (whole files, unified diffs) are read into blocks by
`harness.coder.formats`; `apply_answer` says which format each answer had.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.coder.formats import (
    FormatRefused,
    blank_insensitive_replace,
    closest_line,
    diff_edits,
    kind_of,
    refusal,
    whole_file_edits,
)
from harness.confine import relpath_problem

_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


class EditError(Exception):
    """An answer whose edits cannot be parsed or applied; the message goes back to the model.

    `kind` names what was wrong, for the per-run counts of answer formats (`harness.coder.formats`)."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or kind_of(message)


@dataclass(frozen=True)
class EditBlock:
    file: str
    search: str
    replace: str


@dataclass
class EditOutcome:
    files: dict[str, str]
    applied: int
    notes: list[str] = field(default_factory=list)
    whole_file: bool = False
    #: The answer's format (`harness.coder.formats`): search_replace, whole_file, unified_diff, ...
    format: str = "search_replace"


def parse_blocks(answer: str, default_file: str) -> list[EditBlock]:
    """All SEARCH/REPLACE blocks of an answer, in order. A block with no file name line uses
    `default_file`. Raises EditError for a block left open."""
    lines = answer.splitlines()
    blocks: list[EditBlock] = []
    i = 0
    while i < len(lines):
        if not _SEARCH.match(lines[i]):
            i += 1
            continue
        file = _file_name_before(lines, i) or default_file
        j = _divider_of(lines, i, file, len(blocks) + 1)
        k = j + 1
        while k < len(lines) and not _REPLACE.match(lines[k]):
            k += 1
        if j >= len(lines) or k >= len(lines):
            raise EditError(
                f"the edit block for {file} starting at line {i + 1} of your answer is not closed: "
                "each block needs '=======' and '>>>>>>> REPLACE' lines"
            )
        blocks.append(EditBlock(file, _join(lines[i + 1 : j]), _join(lines[j + 1 : k])))
        i = k + 1
    return blocks


def _file_name_before(lines: list[str], i: int) -> str | None:
    for back in range(i - 1, max(i - 3, -1), -1):
        text = lines[back].strip()
        if not text or _FENCE.match(text):
            continue
        name = text.strip("`*#: ").removeprefix("File").strip("`*: ")
        if re.fullmatch(r"[\w./-]+\.\w+", name):
            return name
        return None
    return None


def _join(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def apply_blocks(files: dict[str, str], blocks: list[EditBlock]) -> EditOutcome:
    """Apply blocks in order to a copy of `files`. Any block that does not apply raises EditError
    naming it, so the model can fix exactly that one."""
    out = dict(files)
    notes: list[str] = []
    for n, block in enumerate(blocks, 1):
        where = f"block {n} ({block.file})"
        safe_relpath(block.file, where)
        if part := _placeholder_part(block):
            raise EditError(
                f"{where}: its {part} part is the format's placeholder words, not code; put real lines of "
                f"{block.file} in SEARCH and your new lines in REPLACE",
                kind="placeholder",
            )
        if block.file not in out:
            if block.search.strip():
                known = ", ".join(sorted(out))
                raise EditError(f"{where}: no file named {block.file!r}; the files are: {known}")
            out[block.file] = block.replace
            notes.append(f"{where}: created new file")
            continue
        if not block.search.strip():
            raise EditError(f"{where}: the SEARCH part is empty; an empty SEARCH may only create a new file")
        text = out[block.file]
        count = text.count(block.search)
        if count == 1:
            out[block.file] = text.replace(block.search, block.replace, 1)
            continue
        if count > 1:
            raise EditError(
                f"{where}: the SEARCH part matches {count} places; add surrounding lines so it matches once"
            )
        replaced = _loose_replace(text, block.search, block.replace) or blank_insensitive_replace(
            text, block.search, block.replace
        )
        if replaced is None:
            raise EditError(
                f"{where}: the SEARCH part does not match the current file; copy the lines exactly, "
                f"starting with: {block.search.splitlines()[0].strip()[:80]!r}"
            )
        out[block.file] = replaced
        notes.append(f"{where}: matched only when ignoring indentation, trailing spaces and blank lines")
    return EditOutcome(files=out, applied=len(blocks), notes=notes)


#: Words that describe a block's parts rather than fill them: small models copy them from a
#: format description verbatim; an edit made of them would match nothing or put prose in the code.
_PLACEHOLDERS = (
    "exact lines copied from the current file",
    "exact lines from the current file",
    "the lines that replace them",
    "lines to find",
    "lines to replace",
    "your changed lines go here",
)


def _placeholder_part(block: EditBlock) -> str | None:
    for name, text in (("SEARCH", block.search), ("REPLACE", block.replace)):
        words = text.strip().lstrip("#").strip(" ()").lower()
        if words and any(words == p or words == p + "." for p in _PLACEHOLDERS):
            return name
    return None


def safe_relpath(name: str, where: str = "") -> str:
    """A model-chosen file name, if it is a short normalised path inside the workspace; else an
    EditError with the reason, which goes back to the model like any edit that does not apply."""
    if problem := relpath_problem(name):
        raise EditError(f"{where or repr(name[:80])}: refused: {problem}")
    return name


def _loose_replace(text: str, search: str, replace: str) -> str | None:
    lines = text.splitlines(keepends=True)
    want = [s.strip() for s in search.splitlines()]
    while want and not want[-1]:
        want.pop()
    if not want:
        return None
    hits = [
        i for i in range(len(lines) - len(want) + 1) if all(lines[i + k].strip() == want[k] for k in range(len(want)))
    ]
    if len(hits) != 1:
        return None
    start = hits[0]
    # Re-indent the replacement by how far the file's indentation differs from the model's.
    have_indent = _indent(lines[start])
    search_first = next(line for line in search.splitlines() if line.strip())
    delta = len(have_indent) - len(_indent(search_first))
    new_lines = []
    for line in replace.splitlines(keepends=True):
        if delta > 0 and line.strip():
            line = " " * delta + line
        elif delta < 0 and line.strip():
            line = line[min(-delta, len(_indent(line))) :]
        new_lines.append(line)
    return "".join(lines[:start] + new_lines + lines[start + len(want) :])


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def apply_answer(answer: str, files: dict[str, str], main_file: str) -> EditOutcome:
    """Parse and apply an answer: SEARCH/REPLACE blocks first, then a unified diff, then whole
    files in code blocks; anything else is refused with what to send instead."""
    blocks = parse_blocks(answer, main_file)
    if blocks:
        outcome = _apply(files, blocks, main_file)
        loose = any("matched only when ignoring" in note for note in outcome.notes)
        outcome.format = "search_replace_loose" if loose else "search_replace"
        return outcome
    diff = diff_edits(answer, main_file)
    if diff is not None:
        try:
            outcome = apply_blocks(files, [EditBlock(*edit) for edit in diff])
        except EditError as exc:
            raise EditError(
                f"your diff does not apply: {str(exc).replace('block', 'hunk', 1)} (a hunk's SEARCH part is its "
                "context and '-' lines); answer with SEARCH/REPLACE blocks instead",
                kind="diff_mismatch",
            ) from None
        outcome.format = "unified_diff"
        outcome.notes.append("answer read as a unified diff")
        return outcome
    try:
        whole = whole_file_edits(answer, files, main_file)
    except FormatRefused as exc:
        raise EditError(str(exc), kind=exc.kind) from None
    if whole is None:
        refused = refusal(answer, files, main_file)
        raise EditError(str(refused), kind=refused.kind)
    outcome = apply_blocks(files, [EditBlock(*edit) for edit in whole])
    outcome.whole_file, outcome.format = True, "whole_file"
    outcome.notes.append("answer taken as the whole file")
    return outcome


def _apply(files: dict[str, str], blocks: list[EditBlock], main_file: str) -> EditOutcome:
    """`apply_blocks`, with a pointer to the line the model probably meant when a SEARCH part matches nowhere."""
    try:
        return apply_blocks(files, blocks)
    except EditError as exc:
        m = re.match(r"block (\d+) ", str(exc))
        if exc.kind != "search_not_found" or m is None:
            raise
        block = blocks[int(m.group(1)) - 1]
        first = next((ln for ln in block.search.splitlines() if ln.strip()), "")
        near = closest_line(files.get(block.file, ""), first) if first else None
        if near is None:
            raise
        raise EditError(f"{exc}; the closest line in {block.file} is: {near[:120]!r}", kind=exc.kind) from None


def _divider_of(lines: list[str], start: int, file: str, number: int) -> int:
    """The `=======` line of the block opened at `start`; a block that reaches its REPLACE
    marker (or the next SEARCH) without one is refused, rather than borrowing the next block's."""
    j = start + 1
    while j < len(lines) and not _DIVIDER.match(lines[j]):
        if _REPLACE.match(lines[j]) or _SEARCH.match(lines[j]):
            raise EditError(
                f"block {number} ({file}) has no '=======' line between its SEARCH and REPLACE parts; "
                "put one after the lines to find",
                kind="missing_divider",
            )
        j += 1
    return j


def render_block(file: str, search: str, replace: str) -> str:
    """One block in the protocol's form (used by the oracle and in prompts)."""
    return f"{file}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"
