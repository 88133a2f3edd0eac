"""What each answer was: its format, and whether it applied or why not; counted per run.

Every answer the coder reads is recorded in `nodes/<n>/answers.jsonl` as it is judged, so a
run's counts (`count_answer_formats`, for `run.json`) show which formats a model uses and
which of them the harness could apply. A node that is redone on resume starts its file again.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

ANSWERS_JSONL = "answers.jsonl"

_lock = threading.Lock()


class AnswerRecord(BaseModel):
    """One answer to a coding request."""

    schema_version: int = 1
    attempt: int
    #: `harness.coder.formats`: an applied format (search_replace, whole_file, ...) or what was wrong.
    format: str
    applied: bool
    reason: str | None = None
    #: Why the model stopped: `length`/`max_tokens` means the answer hit its cap.
    finish_reason: str | None = None


class AnswerFormats(BaseModel):
    """A run's answers by format: applied ones, and refused ones by what was wrong."""

    schema_version: int = 1
    answers: int = 0
    applied: dict[str, int] = Field(default_factory=dict)
    refused: dict[str, int] = Field(default_factory=dict)


def record_answer(node_dir: Path, record: AnswerRecord) -> None:
    node_dir.mkdir(parents=True, exist_ok=True)
    with _lock, open(node_dir / ANSWERS_JSONL, "a") as f:
        f.write(record.model_dump_json() + "\n")


def read_answers(node_dir: Path) -> list[AnswerRecord]:
    path = node_dir / ANSWERS_JSONL
    if not path.is_file():
        return []
    return [AnswerRecord.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]


def count_answer_formats(run_dir: Path) -> AnswerFormats:
    """The counts over every node of a run (`results/<run_id>`)."""
    applied: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    nodes = run_dir / "nodes"
    for node_dir in sorted(nodes.iterdir()) if nodes.is_dir() else []:
        for record in read_answers(node_dir):
            (applied if record.applied else refused)[record.format] += 1
    return AnswerFormats(
        answers=sum(applied.values()) + sum(refused.values()),
        applied=dict(sorted(applied.items())),
        refused=dict(sorted(refused.items())),
    )
