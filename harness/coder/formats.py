"""The answer formats real models give besides SEARCH/REPLACE blocks, read into the same edits.

Small and local models especially answer with a whole file (with or without its name), with
several code blocks, with a unified diff, or with prose alone. Each is either turned into
edits (file, search, replace), which `edits.apply_answer` applies as `EditBlock`s like any
others (so every rule about what may be edited holds for them too), or refused with a reason
the model can act on.

Every answer gets a format name, counted per run (`harness.coder.answer_log`):
applied `search_replace`, `search_replace_loose` (matched only ignoring whitespace),
`whole_file`, `unified_diff`; refused `prose`, `snippets`, `several_whole_files`,
`whole_file_not_python` (a whole Python file that does not parse),
`unclosed_block`, `missing_divider`, `search_not_found`, `search_ambiguous`, `empty_search`,
`unknown_file`, `diff_mismatch`, or `invalid_edit` (any other refusal).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from harness.audit import parse

#: One edit as `edits.EditBlock` takes it: the file, the text it replaces, the replacement.
Edit = tuple[str, str, str]

_FENCED = re.compile(r"^(`{3,}|~{3,})([^\n]*)\n(.*?)^\1[ \t]*$", re.DOTALL | re.MULTILINE)
_NAME = re.compile(r"[\w./-]+\.\w+")
_HUNK = re.compile(r"^@@ [^@]*@@")


@dataclass(frozen=True)
class CodeBlock:
    """A fenced code block of an answer, with the file name it was given, if any."""

    code: str
    name: str | None


def code_blocks(answer: str) -> list[CodeBlock]:
    """The fenced blocks of an answer. A name comes from the fence (```python train.py,
    ```train.py), the line just before it (`train.py`, **train.py:**), or a first-line comment."""
    out = []
    for m in _FENCED.finditer(answer):
        info, code = m.group(2).strip(), m.group(3)
        name = next((w for w in re.split(r"[\s:]+", info) if _NAME.fullmatch(w)), None)
        if name is None:
            before = answer[: m.start()].rstrip().rsplit("\n", 1)[-1]
            name = _name_in(before)
        first = code.split("\n", 1)[0].strip()
        if name is None and first.startswith("#") and _NAME.fullmatch(first.lstrip("# ").strip()):
            name, code = first.lstrip("# ").strip(), code.split("\n", 1)[1] if "\n" in code else ""
        out.append(CodeBlock(code if code.endswith("\n") or not code else code + "\n", name))
    return out


def _name_in(line: str) -> str | None:
    text = line.strip().strip("`*#: ").removeprefix("File").removeprefix("file").strip("`*: ")
    return text if _NAME.fullmatch(text) else None


def whole_file_edits(answer: str, files: dict[str, str], main_file: str) -> list[Edit] | None:
    """An answer that gives whole files as code blocks, as edits; None when it is not one.

    A block counts as a whole file when it is at least half the length of the file it is
    named for, or of the main file when it has no name (or a name no file has: models misname
    the file they were shown). Raises `FormatRefused` for two unnamed whole files (which one?)."""
    chosen: dict[str, str] = {}
    unnamed = []
    for block in code_blocks(answer):
        named = block.name if block.name in files else None
        if len(block.code.splitlines()) < 0.5 * len(files[named or main_file].splitlines()):
            continue  # a fragment
        if named is None:
            unnamed.append(block.code)
        else:
            chosen[named] = block.code
    if len(unnamed) > 1 and main_file not in chosen:
        raise FormatRefused(
            "several_whole_files",
            f"your answer has {len(unnamed)} code blocks that each look like the whole of {main_file}; "
            "give one, or use SEARCH/REPLACE blocks",
        )
    if unnamed and main_file not in chosen:
        chosen[main_file] = unnamed[0]
    if not chosen:
        return None
    for name, code in chosen.items():
        if problem := _not_python(name, files[name], code):
            raise FormatRefused(
                "whole_file_not_python",
                f"your whole-file answer for {name} is not Python ({problem}); put only the file's code "
                "in the code block, with no prose or prompt text in it, or use SEARCH/REPLACE blocks",
            )
    # As edits of the whole text, so that the rules for edits apply to whole files too.
    return [(name, files[name], code) for name, code in chosen.items()]


def _not_python(name: str, old: str, new: str) -> str | None:
    """Why a whole-file replacement of a Python file that parsed does not parse, else None.

    A small model pastes the prompt's prose into the code block with the script; refused here,
    the answer goes back with the line, instead of ending a node on a syntax error."""
    if not name.endswith(".py") or isinstance(parse(old), SyntaxError):
        return None
    error = parse(new)
    if not isinstance(error, SyntaxError):
        return None
    lines = new.splitlines()
    at = lines[error.lineno - 1].strip()[:80] if error.lineno and 0 < error.lineno <= len(lines) else ""
    return (f"line {error.lineno}: " if error.lineno else "") + str(error.msg) + (f": {at!r}" if at else "")


def diff_edits(answer: str, main_file: str) -> list[Edit] | None:
    """A unified diff (fenced or not) as edits: each hunk's context and `-` lines are what it
    replaces, its context and `+` lines the replacement. None when the answer has no diff."""
    lines = answer.splitlines()
    blocks: list[Edit] = []
    file = main_file
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("+++ "):
            name = line[4:].split("\t")[0].strip()
            file = name[2:] if name[:2] in ("a/", "b/") else name
            if file == "/dev/null":
                file = main_file
            i += 1
            continue
        if not _HUNK.match(line):
            i += 1
            continue
        old: list[str] = []
        new: list[str] = []
        i += 1
        while i < len(lines) and not _HUNK.match(lines[i]) and not lines[i].startswith(("--- ", "+++ ", "```", "~~~")):
            text = lines[i]
            if text.startswith("-"):
                old.append(text[1:])
            elif text.startswith("+"):
                new.append(text[1:])
            elif text.startswith(" ") or text == "":
                old.append(text[1:])
                new.append(text[1:])
            elif not text.startswith("\\"):  # "\ No newline at end of file"
                break
            i += 1
        while old and new and old[-1] == "" and new[-1] == "":
            old.pop()
            new.pop()
        blocks.append((file, "".join(s + "\n" for s in old), "".join(s + "\n" for s in new)))
    return blocks or None


class FormatRefused(Exception):
    """An answer in a format that cannot be applied; `kind` names the format for the counts."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def refusal(answer: str, files: dict[str, str], main_file: str) -> FormatRefused:
    """Why an answer with no edits in any known format changes nothing, in words that say what to send."""
    how = (
        "answer with SEARCH/REPLACE blocks: the file name on its own line, <<<<<<< SEARCH, the exact "
        "current lines, =======, the new lines, >>>>>>> REPLACE"
    )
    blocks = code_blocks(answer)
    if not blocks:
        return FormatRefused("prose", f"your answer has no edits (prose changes nothing); {how}")
    longest = max(len(b.code.splitlines()) for b in blocks)
    whole = len(files[main_file].splitlines())
    return FormatRefused(
        "snippets",
        f"your answer has {len(blocks)} code block(s) but no SEARCH/REPLACE blocks, and none is the whole "
        f"of {main_file} (the longest has {longest} lines, the file {whole}); {how}, or give the whole "
        "file in one code block",
    )


#: What a refusal of `edits.apply_blocks` is about, from its words.
_KINDS = [
    ("is not closed", "unclosed_block"),
    ("has no '=======' line", "missing_divider"),
    ("matches", "search_ambiguous"),
    ("does not match", "search_not_found"),
    ("SEARCH part is empty", "empty_search"),
    ("no file named", "unknown_file"),
]


def kind_of(reason: str) -> str:
    return next((kind for words, kind in _KINDS if words in reason), "invalid_edit")


def closest_line(text: str, wanted: str) -> str | None:
    """The line of `text` most like `wanted`, to point a model at what it meant to copy."""
    candidates = [ln.strip() for ln in text.splitlines() if ln.strip()]
    found = difflib.get_close_matches(wanted.strip(), candidates, n=1, cutoff=0.6)
    return found[0] if found else None


def blank_insensitive_replace(text: str, search: str, replace: str) -> str | None:
    """`text` with `search` replaced when they match only once blank lines (and whitespace at
    line ends and starts) are ignored: models drop or add blank lines when they copy."""
    lines = text.splitlines(keepends=True)
    want = [s.strip() for s in search.splitlines() if s.strip()]
    if not want:
        return None
    content = [(i, ln.strip()) for i, ln in enumerate(lines) if ln.strip()]
    hits = [k for k in range(len(content) - len(want) + 1) if [c for _, c in content[k : k + len(want)]] == want]
    if len(hits) != 1:
        return None
    first, last = content[hits[0]][0], content[hits[0] + len(want) - 1][0]
    return "".join(lines[:first]) + replace + "".join(lines[last + 1 :])
