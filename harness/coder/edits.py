"""The edit protocol: SEARCH/REPLACE blocks (or one whole file) parsed from a model's answer.

    train.py
    <<<<<<< SEARCH
    exact lines from the current file
    =======
    the lines that replace them
    >>>>>>> REPLACE

A SEARCH part must match exactly once. When it matches nowhere, a match that ignores
indentation and trailing spaces is tried second, and the note says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.confine import relpath_problem

_SEARCH = re.compile(r"^\s*<{5,9} ?SEARCH\s*$")
_DIVIDER = re.compile(r"^\s*={5,9}\s*$")
_REPLACE = re.compile(r"^\s*>{5,9} ?REPLACE\s*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_FENCED_BLOCK = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1\s*$", re.DOTALL | re.MULTILINE)


class EditError(Exception):
    """An answer whose edits cannot be parsed or applied; the message goes back to the model."""


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
        j = i + 1
        while j < len(lines) and not _DIVIDER.match(lines[j]):
            j += 1
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


def whole_file_answer(answer: str, current: str) -> str | None:
    """The fallback: an answer that is one fenced code block looking like the whole file."""
    blocks = [m.group(2) for m in _FENCED_BLOCK.finditer(answer)]
    if len(blocks) != 1:
        return None
    code = blocks[0]
    # A fragment is not a whole file: require a comparable size to the file it replaces.
    if len(code.splitlines()) < 0.5 * len(current.splitlines()):
        return None
    return code if code.endswith("\n") else code + "\n"


def apply_blocks(files: dict[str, str], blocks: list[EditBlock]) -> EditOutcome:
    """Apply blocks in order to a copy of `files`. Any block that does not apply raises EditError
    naming it, so the model can fix exactly that one."""
    out = dict(files)
    notes: list[str] = []
    for n, block in enumerate(blocks, 1):
        where = f"block {n} ({block.file})"
        safe_relpath(block.file, where)
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
        replaced = _loose_replace(text, block.search, block.replace)
        if replaced is None:
            raise EditError(
                f"{where}: the SEARCH part does not match the current file; copy the lines exactly, "
                f"starting with: {block.search.splitlines()[0].strip()[:80]!r}"
            )
        out[block.file] = replaced
        notes.append(f"{where}: matched only when ignoring indentation and trailing spaces")
    return EditOutcome(files=out, applied=len(blocks), notes=notes)


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
    """Parse and apply an answer: SEARCH/REPLACE blocks first, one whole-file block second."""
    blocks = parse_blocks(answer, main_file)
    if blocks:
        return apply_blocks(files, blocks)
    whole = whole_file_answer(answer, files[main_file])
    if whole is not None:
        return EditOutcome(
            files={**files, main_file: whole},
            applied=1,
            whole_file=True,
            notes=["answer taken as the whole file"],
        )
    raise EditError(
        "no edit blocks found; answer with SEARCH/REPLACE blocks as described "
        "(file name line, <<<<<<< SEARCH, =======, >>>>>>> REPLACE)"
    )


def render_block(file: str, search: str, replace: str) -> str:
    """One block in the protocol's form (used by the oracle and in prompts)."""
    return f"{file}\n<<<<<<< SEARCH\n{search}=======\n{replace}>>>>>>> REPLACE\n"
