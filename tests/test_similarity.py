"""Similarity to the human change: the oracle's code scores 1, the null model's 0, and a
partial change the share counted by hand."""

from __future__ import annotations

import pytest

from harness.coder.edits import apply_answer
from harness.manifests.tracks import load_track
from harness.models.base import CallContext
from harness.models.providers.oracle import NullModel, OracleModel
from harness.similarity import changes, code_lines, similarity

RECORD_I = '''\
"""A training script."""
import math

LR = 1e-3  # the learning rate
STEPS = 5000
WARMUP = 100


def lr_at(step):
    """Cosine decay."""
    return LR * 0.5 * (1 + math.cos(math.pi * step / STEPS))


def train():
    for step in range(STEPS):
        print(step, lr_at(step))
'''

# Two hunks: the constants (3 lines out, 3 in) and the schedule (1 out, 2 in).
RECORD_NEXT = '''\
"""A training script with a better schedule."""
import math

LR = 3e-3  # three times higher
STEPS = 3000
COOLDOWN = 0.5


def lr_at(step):
    """Warmup-stable-decay."""
    start = STEPS * (1 - COOLDOWN)
    return LR if step < start else LR * (STEPS - step) / (STEPS - start)


def train():
    for step in range(STEPS):
        print(step, lr_at(step))
'''

# Makes the first hunk exactly (with other whitespace and comments), none of the second, and
# one change of its own.
PARTIAL = '''\
"""Mine."""
import math

LR   =   3e-3
STEPS = 3000   # fewer steps
COOLDOWN = 0.5


def lr_at(step):
    return LR * 0.5 * (1 + math.cos(math.pi * step / STEPS))


def train():
    for step in range(STEPS):
        print(step, lr_at(step), flush=True)
'''


def test_code_lines_drop_comments_docstrings_and_spacing() -> None:
    assert code_lines('"""doc"""\nx  =  1  # one\n\n# alone\ns = "# not a comment"\n') == [
        "x = 1",
        's = "# not a comment"',
    ]


def test_the_human_change_has_two_hunks_of_code() -> None:
    hunks = changes(RECORD_I, RECORD_NEXT)
    assert [len(h) for h in hunks] == [6, 3]
    assert ("+", "COOLDOWN = 0.5") in hunks[0] and ("-", "WARMUP = 100") in hunks[0]


def test_partial_change_scores_the_hand_computed_share() -> None:
    s = similarity(RECORD_I, RECORD_NEXT, PARTIAL)
    # Human change: 9 changed lines in 2 hunks. The candidate has all 6 of the first hunk
    # (-LR, -STEPS, -WARMUP, +LR, +STEPS, +COOLDOWN) and none of the second's 3; its own change
    # of the print line is 2 extra pairs (-old, +new).
    assert (s.human_lines, s.matched_lines, s.human_hunks, s.matched_hunks) == (9, 6, 2, 1)
    assert s.lines == pytest.approx(6 / 9)
    assert s.hunks == pytest.approx(1 / 2)
    assert s.extra_lines == 2


def test_identical_and_unchanged_code() -> None:
    assert similarity(RECORD_I, RECORD_NEXT, RECORD_NEXT).lines == 1.0
    assert similarity(RECORD_I, RECORD_NEXT, RECORD_I).lines == 0.0
    # A human change of prose only has no code to reproduce: the score is undefined, not 0 or 1.
    prose = RECORD_I.replace("Cosine decay.", "Cosine decay to zero.")
    assert similarity(RECORD_I, prose, RECORD_I).lines is None


def test_a_script_that_does_not_tokenize_is_compared_with_its_comments() -> None:
    broken = "x = (1,\n# a comment\n"
    assert code_lines(broken) == ["x = (1,", "# a comment"]


def test_a_candidate_nested_past_the_parsers_limits_is_compared_line_by_line() -> None:
    deep = "x = 1" + "[0]" * 100_000 + "\n# a comment\n"
    assert [line[:11] for line in code_lines(deep)] == ["x = 1[0][0]"]
    assert similarity(RECORD_I, RECORD_NEXT, RECORD_I + deep).lines == 0.0


MINI_TASKS = [t.id for t in load_track("mini").tasks()]


def _answer_applied(model: OracleModel | NullModel, task_id: str) -> tuple[str, str, str]:
    track = load_track("mini")
    task = next(t for t in track.tasks() if t.id == task_id)
    a, b = track.record(task.from_record), track.record(task.to_record)
    ctx = CallContext(task_id=task_id, file_name=a.script, current_code=a.code())
    answer = model.generate([], ctx).text
    code = apply_answer(answer, {a.script: a.code()}, a.script).files[a.script]
    return a.code(), b.code(), code


@pytest.mark.parametrize("task_id", MINI_TASKS)
def test_oracle_scores_one_and_null_zero_on_every_mini_task(task_id: str) -> None:
    """The offline models' real answers, applied through the edit protocol."""
    old, new, oracle_code = _answer_applied(OracleModel("oracle"), task_id)
    s = similarity(old, new, oracle_code)
    assert s.lines == 1.0 and s.hunks == 1.0 and s.extra_lines == 0
    old, new, null_code = _answer_applied(NullModel("null"), task_id)
    s = similarity(old, new, null_code)
    assert s.lines == 0.0 and s.hunks == 0.0 and s.human_lines > 0
