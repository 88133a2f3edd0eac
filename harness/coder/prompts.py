"""The prompts, kept in one place so a reader sees exactly what the model is told."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.coder.edits import render_block
from harness.confine import read_tail
from harness.errors import ConfigError
from harness.logparse import ParsedLog
from harness.manifests.tracks import HINT_LEVELS, Task
from harness.models.base import Message
from harness.outcome import RunResult

SYSTEM = """\
You are an expert machine-learning research engineer taking part in a training speedrun.
You are given a training script and must change it so that it reaches the target validation
loss in less training time, while keeping to the rules.

Answer with a short plan (a few sentences), then your edits as SEARCH/REPLACE blocks, each
preceded by the file name on its own line. For example, this block finds one line of the
current {file} and puts a comment above it:

{example}
Each SEARCH part must match the current file exactly once: copy the lines character for
character, with enough surrounding lines to be unique. Use several small blocks rather than
one large one. To create a new file, use an empty SEARCH part."""

#: Small models copy a format's placeholder words into their SEARCH parts verbatim (seen with
#: Qwen2.5-Coder-1.5B), so the example in the system prompt is a real line of the file.
EXAMPLE_COMMENT = "# (your changed lines go here)"


def example_line(code: str) -> str | None:
    """A short line of `code` that occurs exactly once, to show the edit format on real text."""
    lines = code.splitlines()
    candidates = [
        line
        for line in lines
        if 12 <= len(line.strip()) <= 70
        and not line.strip().startswith(("#", '"', "'"))
        and "=" in line
        # Not the data contract's lines: the example should point at nothing the rules guard.
        and "environ" not in line
    ]
    for line in candidates:
        if lines.count(line) == 1 and code.count(line) == 1:
            return line
    return None


def example_block(file_name: str, code: str) -> str:
    line = example_line(code)
    if line is None:
        line = "import os"  # the form still reads, though this line may not be in the file
    indent = line[: len(line) - len(line.lstrip())]
    return render_block(file_name, line + "\n", f"{indent}{EXAMPLE_COMMENT}\n{line}\n")


HINT_TITLES = {
    "pseudocode": "Hint (pseudocode of the change)",
    "text": "Hint (description of the change)",
    "paper": "Hint (a short paper describing the change)",
}


def parse_hint_levels(spec: str) -> list[str]:
    """`none`, `pseudocode`, `pseudocode+text`, ... -> the levels, validated."""
    if spec.strip() in ("", "none"):
        return []
    levels = [s.strip() for s in spec.split("+")]
    for level in levels:
        if level not in HINT_LEVELS:
            raise ConfigError(
                f"unknown hint level {level!r}; use none or a '+'-joined list of: {', '.join(HINT_LEVELS)}"
            )
    return levels


def hints_for(task: Task, levels: list[str]) -> list[tuple[str, str]]:
    out = []
    for level in levels:
        text = getattr(task.hints, level)
        if not text:
            raise ConfigError(
                f"task {task.id} has no {level!r} hint (it has: {', '.join(task.hints.levels) or 'none'})"
            )
        out.append((HINT_TITLES[level], text))
    return out


@dataclass
class Feedback:
    """What the model learns about the parent node."""

    kind: str  # draft | improve | debug
    parent_summary: str = ""
    error: str = ""
    log_tail: str = ""
    #: A scaffold's note for this attempt (`Action.note`), placed just before the code.
    direction: str = ""


def build_messages(
    task: Task,
    file_name: str,
    code: str,
    hint_levels: list[str],
    feedback: Feedback,
    target_description: str,
) -> list[Message]:
    parts = [
        f"# Task {task.id}: {task.title}",
        target_description,
        "## Rules\n" + "\n".join(f"- {rule}" for rule in task.rules),
    ]
    for title, text in hints_for(task, hint_levels):
        # Verbatim: indentation and blank lines of a hint carry meaning in pseudocode.
        parts.append(f"## {title}\n\n{text}")
    if feedback.kind == "improve":
        parts.append(
            "## Results of this script\n"
            + feedback.parent_summary
            + "\n\nImprove the script so that it reaches the target in less training time."
        )
    elif feedback.kind == "debug":
        parts.append(
            "## This script failed\n"
            + (feedback.error or "the run failed")
            + ("\n\nEnd of its log:\n```\n" + feedback.log_tail + "\n```" if feedback.log_tail else "")
            + "\n\nFix the script so that it runs and reaches the target."
        )
    else:
        parts.append("Make the change that speeds up training to the target.")
    if feedback.direction:
        parts.append(f"## Direction for this attempt\n\n{feedback.direction}")
    parts.append(f"## Current {file_name}\n\n```python\n{code}```")
    return [
        Message(role="system", content=SYSTEM.format(file=file_name, example=example_block(file_name, code))),
        Message(role="user", content="\n\n".join(parts)),
    ]


#: How much of an answer that did not apply goes back with the request to fix it: enough to
#: recognise it, never so much that a runaway answer (one that echoed the prompt until its cap)
#: crowds the conversation out of the context window.
FAILED_ANSWER_CHARS = 1500


def failed_answer(answer: str) -> Message:
    """The model's answer that did not apply, as its turn of the conversation, cut to its start."""
    text = answer.strip()
    if len(text) > FAILED_ANSWER_CHARS:
        rest = len(text) - FAILED_ANSWER_CHARS
        text = f"{text[:FAILED_ANSWER_CHARS]}\n[... the remaining {rest:,} characters of this answer are left out ...]"
    return Message(role="assistant", content=text or "(an empty answer)")


def fix_request(reason: str, *, cut_off: bool = False) -> Message:
    """What the model is told about its answer that did not apply; `cut_off`: it ended at its token cap."""
    cap = (
        " Your answer was cut off at its length limit: write only the plan and small SEARCH/REPLACE blocks,"
        " and do not repeat the task or the file."
        if cut_off
        else ""
    )
    return Message(
        role="user",
        content=(
            f"Your edits could not be applied: {reason}\n"
            f"Nothing was changed.{cap} Answer again with corrected SEARCH/REPLACE blocks "
            "against the current file shown above."
        ),
    )


ANALYSIS_SYSTEM = """\
You review one training run of a speedrun: a script was changed to reach a target validation
loss in less training time, then run. In at most five sentences, say what the change was,
what the run shows (use the numbers given; do not invent any), and the most promising next
step. Plain prose, no code."""


def analysis_messages(
    task: Task,
    target_description: str,
    action_kind: str,
    plan: str,
    diff: str,
    summary: str,
    tail: str,
) -> list[Message]:
    parts = [
        f"# Task {task.id}: {task.title}",
        target_description,
        f"## The attempt ({action_kind})\n\n{plan or '(no plan stated)'}",
        f"## Its diff\n\n```diff\n{diff or '(no change)'}\n```",
        f"## The run (read from its log)\n\n{summary}",
        f"## End of its log\n\n```\n{tail}\n```",
    ]
    return [Message(role="system", content=ANALYSIS_SYSTEM), Message(role="user", content="\n\n".join(parts))]


LOG_TAIL_LINES = 60
LOG_TAIL_CHARS = 4000
#: How much of the end of a log is read to find its last lines.
LOG_TAIL_READ_BYTES = 64 * 1024


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20].rstrip() + "\n[... cut ...]"


def log_tail(path: Path) -> str:
    """The end of a log, bounded in lines and characters (a flooding script must not flood the prompt)."""
    # Not followed through a link: an unsandboxed run could swap its log for one to a key file.
    text = read_tail(path, LOG_TAIL_READ_BYTES).decode("utf-8", errors="replace")
    tail = "\n".join(text.splitlines()[-LOG_TAIL_LINES:])
    return tail[-LOG_TAIL_CHARS:]


def summarize(result: RunResult, parsed: ParsedLog, target: float) -> str:
    """A short deterministic account of a run, for the next prompt and the journal."""
    parts = []
    if result.val_loss is not None:
        steps = f"{result.step}/{result.total_steps}" if result.total_steps else f"{result.step}"
        parts.append(f"final val_loss {result.val_loss:.4f} at step {steps}")
    if result.train_time_ms is not None:
        parts.append(f"train_time {result.train_time_ms:.0f} ms")
    if parsed.step_avg_ms is not None:
        parts.append(f"step_avg {parsed.step_avg_ms:.2f} ms")
    reached = "reached" if result.reached_target else "did NOT reach"
    parts.append(f"{reached} the target val_loss {target}")
    if len(parsed.val_history) > 1:
        pts = parsed.val_history[:: max(1, len(parsed.val_history) // 6)][-6:]
        parts.append("val_loss curve: " + ", ".join(f"{s}:{v:.3f}" for s, v in pts))
    if result.error:
        parts.append(f"error: {result.error}")
    return "; ".join(parts)
