"""Read a training log into numbers, deterministically: the scorer trusts these, never an LLM.

Two formats are understood:

- ``standard``: modded-nanogpt records 3 onward and this project's own scripts,
  ``step:S/N val_loss:X train_time:Tms step_avg:Ams`` (validation) and
  ``step:S/N train_loss:X train_time:Tms step_avg:Ams`` (training; the loss is optional).
- ``llmc``: the llm.c logs of records 1 and 2, ``s:S tel:X`` (validation) and
  ``s:S trl:X lr:.. norm:..`` (training). They carry no time and no step count.

Logs come from runs that were killed, that diverged, or that printed from several
processes, so the parser reads what it can and says in ``notes`` what it could not.
It scans in fixed-size chunks, so a 100 MB log costs a few MB of memory plus
``val_history``.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["ParsedLog", "parse_log", "parse_log_file"]

_CHUNK_CHARS = 1 << 20
# A metric line is ~100 characters; anything far longer is garbage (or a progress bar
# that never printed a newline), and keeping only its tail bounds memory.
_MAX_LINE_CHARS = 1 << 16

# Patterns without ambiguous repetition, so each runs in time linear in the line even
# on garbage. Counts are capped at 12 digits: a longer run is noise, and `int()`
# refuses strings past 4300 digits anyway. The look-behind keeps `substep:` or the
# `s:` of `loss:` from matching; `step:` gets the same test in `_standard_step`.
_STANDARD_STEP = re.compile(r"step:(\d{1,12})/(\d{1,12})(?!\d)")
_LLMC_STEP = re.compile(r"(?<![A-Za-z0-9_])s:(\d{1,12})[ \t]+(tel|trl):(\S+)")
_PEAK_MEMORY = re.compile(r"(?<![\d.])(\d{1,12}(?:\.\d{1,6})?)\s?(MiB|GiB|MB|GB)")
_PEAK_MEMORY_WINDOW = 200
_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_MAX_NUMBER_CHARS = 40
_STANDARD_KEYS = frozenset({"val_loss", "train_loss", "train_time", "step_avg"})
_MEMORY_UNIT_MIB = {"MiB": 1.0, "GiB": 1024.0, "MB": 1e6 / 2**20, "GB": 1e9 / 2**20}


class ParsedLog(BaseModel):
    """What a training log says about its run.

    The final validation line is what a speedrun is judged on, so ``val_loss``,
    ``step`` and ``train_time_ms`` all come from that one line; a time from any other
    line would mix a measurement with a different loss.

    ``finished`` says the run reached its final evaluation, not that it hit a target:
    validity is the scorer's decision. For ``standard`` logs it means the last
    validation line is at ``step:N/N``. llm.c logs never state N, but llm.c evaluates
    at its last step and stops without training it, so an ``llmc`` log is finished
    when its last metric line is a validation line at the highest step in the log.
    A log cut exactly between a periodic eval's ``tel`` line and the ``trl`` line of
    the same step passes that test too; nothing in the format tells them apart.

    ``val_loss`` keeps ``nan``/``inf`` as floats, since a diverged run must not look
    like a run that never validated; JSON carries them as ``NaN``/``Infinity`` so a
    stored result reads back unchanged. ``step_avg_ms`` is that of the last line
    reporting one (``None`` while it reads ``nan``, before the timer starts), and
    ``peak_memory_mib`` the first figure of the last ``peak memory`` line, which is
    the allocated, not the reserved, memory in modded-nanogpt's logs.
    """

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    format: Literal["standard", "llmc", "unknown"]
    val_loss: float | None
    train_time_ms: float | None
    step: int | None
    total_steps: int | None
    finished: bool
    val_history: list[tuple[int, float]]
    train_loss: float | None
    step_avg_ms: float | None
    peak_memory_mib: float | None
    diverged: bool
    notes: list[str]


def parse_log(text: str) -> ParsedLog:
    """Parse a log held in memory; see ``parse_log_file`` for one on disk."""
    chunks = (text[i : i + _CHUNK_CHARS] for i in range(0, len(text), _CHUNK_CHARS))
    return _parse_lines(_split_lines(chunks))


def parse_log_file(path: str | Path) -> ParsedLog:
    """Parse a log on disk without loading it whole.

    Undecodable bytes become U+FFFD rather than an error, because a log with binary
    garbage in it still holds the numbers the scorer needs. A UTF-16 byte-order mark
    is honoured: PowerShell's ``>`` writes UTF-16, and such a log would otherwise read
    as noise.
    """
    path = Path(path)
    with path.open("rb") as raw:
        head = raw.read(2)
    encoding = "utf-16" if head in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    # newline="" hands `\r` through untouched, so both inputs split on the same rule.
    with path.open(encoding=encoding, errors="replace", newline="") as stream:
        return _parse_lines(_split_lines(iter(lambda: stream.read(_CHUNK_CHARS), "")))


def _split_lines(chunks: Iterable[str]) -> Iterator[tuple[str, bool]]:
    """Yield ``(line, terminated)``.

    A lone ``\\r`` ends a line too: progress bars redraw with it, and splitting there
    separates a metric line from the bar that shared its physical line. The last line
    is reported as unterminated when no line break follows it, because a killed
    process can stop writing in the middle of a number.
    """
    carry = ""
    for chunk in chunks:
        parts = chunk.replace("\r", "\n").split("\n")
        parts[0] = carry + parts[0]
        carry = parts.pop()
        for part in parts:
            if part:
                yield part[-_MAX_LINE_CHARS:], True
        carry = carry[-_MAX_LINE_CHARS:]
    if carry:
        yield carry, False


def _complete_part(line: str) -> str:
    """Drop the last token of an unterminated line unless it is provably whole.

    ``val_loss:3.27`` may be the start of ``val_loss:3.2783``; trusting it would make
    a cut log look better than its run. A token closed by its ``ms`` unit, or followed
    by whitespace, cannot have been cut.
    """
    if line[-1].isspace() or line.endswith("ms"):
        return line
    cut = max(line.rfind(" "), line.rfind("\t"))
    return line[:cut] if cut >= 0 else ""


def _number(text: str) -> float | None:
    """A plain number, ``nan`` or ``inf``.

    Beyond what ``float()`` refuses, this refuses ``1_000`` and non-ASCII digits, which
    no training script prints; a regex would say the same at twice the cost per line.
    Callers pass whitespace-free tokens, so ``float()``'s tolerance of spaces never applies.
    """
    if len(text) > _MAX_NUMBER_CHARS or "_" in text or not text.isascii():
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _milliseconds(text: str) -> float | None:
    """A duration must carry its unit: a bare number is ambiguous, or a cut ``...ms``."""
    if text.endswith("ms"):
        return _number(text[:-2])
    if text.endswith("s"):
        seconds = _number(text[:-1])
        return None if seconds is None else seconds * 1000.0
    return None


class _State:
    """Running totals of one scan; only ``val_history`` grows with the log."""

    def __init__(self) -> None:
        self.format: Literal["standard", "llmc", "unknown"] = "unknown"
        self.val_loss: float | None = None
        self.val_time_ms: float | None = None
        self.val_step: int | None = None
        self.val_history: list[tuple[int, float]] = []
        self.total_steps: int | None = None
        self.train_loss: float | None = None
        self.step_avg_raw: str | None = None
        self.peak_memory_mib: float | None = None
        self.last_step: int | None = None
        self.max_step: int | None = None
        self.last_line_was_val = False
        self.first_nonfinite_step: int | None = None
        self.other_format_lines = 0
        self.bad_values = 0
        self.notes: list[str] = []

    def note_once(self, message: str) -> None:
        if message not in self.notes:
            self.notes.append(message)

    def see_step(self, step: int) -> None:
        # Equal steps are normal (a val line follows the train line of its step in record 4).
        if self.last_step is not None and step < self.last_step:
            self.note_once(
                f"step counter went back from {self.last_step} to {step}: "
                "a restarted run or several ranks printing; the last validation line wins"
            )
        self.last_step = step
        self.max_step = step if self.max_step is None else max(self.max_step, step)

    def see_loss(self, step: int, loss: float) -> None:
        if not math.isfinite(loss) and self.first_nonfinite_step is None:
            self.first_nonfinite_step = step

    def see_val(self, step: int, loss: float, time_ms: float | None) -> None:
        self.see_loss(step, loss)
        self.val_loss, self.val_step, self.val_time_ms = loss, step, time_ms
        self.val_history.append((step, loss))
        self.last_line_was_val = True

    def claim(self, fmt: Literal["standard", "llmc"]) -> bool:
        """Fix the format on its first metric line; mixing two would corrupt the totals."""
        if self.format == "unknown":
            self.format = fmt
        if self.format != fmt:
            self.other_format_lines += 1
            return False
        return True


def _standard_step(line: str) -> re.Match[str] | None:
    """The last ``step:S/N`` of a line that does not continue a word.

    The last, because when a cut line is glued to the next one the next is the whole
    one. Found by ``rfind`` then anchored matches: a look-behind regex scanned with
    ``finditer`` costs several times as much on every line of a large log.
    """
    at = line.rfind("step:")
    while at >= 0:
        if (at == 0 or line[at - 1] not in _WORD_CHARS) and (match := _STANDARD_STEP.match(line, at)):
            return match
        at = line.rfind("step:", 0, at)
    return None


def _read_standard(state: _State, line: str, match: re.Match[str]) -> None:
    step, total = int(match.group(1)), int(match.group(2))
    fields: dict[str, str] = {}
    for token in line[match.end() :].split():
        key, sep, value = token.partition(":")
        if sep and key in _STANDARD_KEYS and key not in fields:
            fields[key] = value
    if state.total_steps is not None and total != state.total_steps:
        state.note_once(f"total steps changed from {state.total_steps} to {total}")
    state.total_steps = total
    state.see_step(step)

    # Kept raw: only the last one is reported, so parsing each would be wasted work.
    state.step_avg_raw = fields.get("step_avg", state.step_avg_raw)
    if (raw := fields.get("train_loss")) is not None:
        if (loss := _number(raw)) is None:
            state.bad_values += 1
        else:
            state.train_loss = loss
            state.see_loss(step, loss)
    state.last_line_was_val = False
    if (raw := fields.get("val_loss")) is not None:
        if (loss := _number(raw)) is None:
            state.bad_values += 1
            return
        time_raw = fields.get("train_time")
        state.see_val(step, loss, None if time_raw is None else _milliseconds(time_raw))


def _read_llmc(state: _State, match: re.Match[str]) -> None:
    step, kind = int(match.group(1)), match.group(2)
    value = _number(match.group(3))
    if value is None:
        state.bad_values += 1
        return
    state.see_step(step)
    if kind == "tel":
        state.see_val(step, value, None)
    else:
        state.train_loss = value
        state.see_loss(step, value)
        state.last_line_was_val = False


def _read_peak_memory(state: _State, line: str, start: int) -> None:
    # `peak memory allocated: 29898 MiB reserved: 44552 MiB`: the first figure is
    # what the model needed; the reserved one depends on the allocator.
    if match := _PEAK_MEMORY.search(line, start, start + _PEAK_MEMORY_WINDOW):
        state.peak_memory_mib = float(match.group(1)) * _MEMORY_UNIT_MIB[match.group(2)]


def _parse_lines(lines: Iterable[tuple[str, bool]]) -> ParsedLog:
    state = _State()
    for raw_line, terminated in lines:
        line = raw_line
        if not terminated:
            line = _complete_part(raw_line)
            if ":" in raw_line[len(line) :]:  # only a dropped `key:value` is worth a note
                state.note_once("last line is cut off; its final field was ignored")
            if not line:
                continue
        # Cheap substring tests first: most lines of a big log are neither kind.
        if "step:" in line:
            standard = _standard_step(line)
            if standard is not None and state.claim("standard"):
                _read_standard(state, line, standard)
                continue
        if "s:" in line and (llmc := _LLMC_STEP.search(line)) is not None and state.claim("llmc"):
            _read_llmc(state, llmc)
            continue
        if (at := line.find("eak memory")) > 0 and line[at - 1] in "pP":
            _read_peak_memory(state, line, at)
    return _result(state)


def _step_avg_ms(raw: str | None) -> float | None:
    """``nanms`` in the first steps means the timer has not started: no measurement, not divergence."""
    avg = None if raw is None else _milliseconds(raw)
    return avg if avg is not None and math.isfinite(avg) else None


def _result(state: _State) -> ParsedLog:
    if state.format == "standard":
        finished = state.val_step is not None and state.val_step == state.total_steps
    elif state.format == "llmc":
        # llm.c evaluates at the last step and stops without training it, so a finished
        # log ends on a val line at its highest step. A log cut after the val line of a
        # periodic eval, before that step's train line, looks the same; that one-line
        # window is the price of a format that never states its length.
        finished = state.last_line_was_val and state.val_step == state.max_step
    else:
        finished = False

    notes = state.notes
    if state.format == "unknown":
        notes.append("no training-metric lines found")
    elif state.val_step is None:
        notes.append("no validation line found")
    elif not finished:
        where = f"step {state.last_step}" + (f" of {state.total_steps}" if state.total_steps else "")
        notes.append(f"log ends at {where}, before the final validation")
    if state.format == "standard" and state.val_step is not None and state.val_time_ms is None:
        notes.append(f"validation line at step {state.val_step} has no readable train_time")
    if state.first_nonfinite_step is not None:
        notes.append(f"loss is not finite from step {state.first_nonfinite_step}")
    if state.bad_values:
        notes.append(f"{state.bad_values} metric value(s) unreadable and skipped")
    if state.other_format_lines:
        other = "llm.c" if state.format == "standard" else "standard"
        notes.append(f"{state.other_format_lines} {other}-format line(s) ignored")

    return ParsedLog(
        format=state.format,
        val_loss=state.val_loss,
        train_time_ms=state.val_time_ms,
        step=state.val_step,
        total_steps=state.total_steps,
        finished=finished,
        val_history=state.val_history,
        train_loss=state.train_loss,
        step_avg_ms=_step_avg_ms(state.step_avg_raw),
        peak_memory_mib=state.peak_memory_mib,
        diverged=state.first_nonfinite_step is not None,
        notes=notes,
    )
