"""From a model's answer to a candidate workspace: ask, parse, apply, and send back what failed."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.coder.answer_log import AnswerRecord, record_answer
from harness.coder.edits import EditError, apply_answer
from harness.coder.prompts import failed_answer, fix_request
from harness.coder.transcript import recorded_call
from harness.models.base import CallContext, Message, Model, ModelError, Usage

#: How many times an answer whose edits do not apply is sent back before the node fails.
MAX_FIX_ATTEMPTS = 2
#: What models say when an answer stopped at its token cap.
CUT_OFF = ("length", "max_tokens")


@dataclass
class CoderResult:
    files: dict[str, str] | None
    usage: Usage = field(default_factory=Usage)
    plan: str = ""
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def write_candidate(
    model: Model,
    messages: list[Message],
    files: dict[str, str],
    main_file: str,
    *,
    task_id: str,
    node_id: int,
    node_dir: Path,
    before_call: Callable[[], None] | None = None,
    after_call: Callable[[Usage], None] | None = None,
    max_fix_attempts: int = MAX_FIX_ATTEMPTS,
) -> CoderResult:
    """Ask `model` for edits to `files` and apply them. `before_call` may raise to stop (budgets).

    An answer that does not apply goes back with the reason, as the original request plus that
    answer's start and the reason: each retry is as long as the first request and a little more,
    never the whole conversation so far."""
    usage = Usage()
    notes: list[str] = []
    convo = list(messages)
    for attempt in range(max_fix_attempts + 1):
        ctx = CallContext(
            task_id=task_id,
            file_name=main_file,
            current_code=files[main_file],
            node_id=node_id,
            attempt=attempt,
        )
        try:
            completion = recorded_call(model, convo, ctx, node_dir, before_call, after_call)
        except ModelError as exc:
            return CoderResult(None, usage, notes=notes, error=f"model error: {exc}")
        usage = usage + completion.usage
        finish = completion.finish_reason
        try:
            outcome = apply_answer(completion.text, files, main_file)
        except EditError as exc:
            record_answer(
                node_dir,
                AnswerRecord(attempt=attempt, format=exc.kind, applied=False, reason=str(exc), finish_reason=finish),
            )
            notes.append(f"attempt {attempt}: {exc}")
            ask_again = fix_request(str(exc), cut_off=finish in CUT_OFF)
            convo = [*messages, failed_answer(completion.text), ask_again]
            continue
        record_answer(
            node_dir, AnswerRecord(attempt=attempt, format=outcome.format, applied=True, finish_reason=finish)
        )
        return CoderResult(outcome.files, usage, plan=_plan(completion.text), notes=[*notes, *outcome.notes])
    return CoderResult(
        None,
        usage,
        notes=notes,
        error=f"edits did not apply after {max_fix_attempts + 1} answers: " + (notes[-1] if notes else ""),
    )


def _plan(answer: str) -> str:
    """The prose before the first edit block (or code block, or diff): the model's stated plan, for the journal."""
    head = re.split(r"^(?:<<<<<<< SEARCH|```|~~~|--- )", answer, maxsplit=1, flags=re.MULTILINE)[0]
    lines = [ln for ln in head.strip().splitlines() if ln.strip()]
    if lines and "." in lines[-1] and " " not in lines[-1].strip():
        lines = lines[:-1]  # the file name line that precedes a block
    return "\n".join(lines)[:2000]


def unified_diff(old: dict[str, str], new: dict[str, str]) -> str:
    out: list[str] = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, ""), new.get(name, "")
        if a != b:
            out.extend(
                difflib.unified_diff(
                    a.splitlines(keepends=True), b.splitlines(keepends=True), f"parent/{name}", f"node/{name}"
                )
            )
    return "".join(out)
