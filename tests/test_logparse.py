"""The log parser against real speedrun logs and against the ways logs get damaged."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

from harness import logparse
from harness.logparse import ParsedLog, parse_log, parse_log_file


def _fixtures_dir() -> Path:
    shared = os.environ.get("SPEEDRUN_SHARED")
    base = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    logs = base / "fixtures" / "modded-nanogpt-logs"
    if not logs.is_dir():
        # A user's clone has no ../shared: these checks skip and say why (CI clones beside it).
        pytest.skip(
            f"SHARED LOG FIXTURES SKIPPED: not found at {logs}: expected ../shared/fixtures/modded-nanogpt-logs "
            "beside the checkout, or set SPEEDRUN_SHARED to the `shared` directory"
        )
    return logs


def _fixture_text(name: str) -> str:
    return (_fixtures_dir() / name).read_text(encoding="utf-8")


# (file, format, final step, total steps, final val loss, final train_time ms, has train_loss)
UPSTREAM = [
    ("record01_llmc_main.log", "llmc", 19560, None, 3.2722, None, True),
    ("record02_adamw.log", "llmc", 9536, None, 3.275959, None, True),
    ("record04_muon.txt", "standard", 6200, 6200, 3.2785, 1339067.0, True),
    ("record12_flexattention.txt", "standard", 1875, 1875, 3.2783, 301825.0, True),
    ("record15_unetvalueembeds.txt", "standard", 1480, 1480, 3.2773, 236843.0, False),
    ("record21_batchsize.txt", "standard", 1770, 1770, 3.2808, 176003.0, False),
]


@pytest.mark.parametrize(("name", "fmt", "step", "total", "val_loss", "time_ms", "has_train"), UPSTREAM)
def test_upstream_logs_final_values(
    name: str,
    fmt: str,
    step: int,
    total: int | None,
    val_loss: float,
    time_ms: float | None,
    has_train: bool,
) -> None:
    parsed = parse_log_file(_fixtures_dir() / name)
    assert parsed.format == fmt
    assert parsed.step == step
    assert parsed.total_steps == total
    assert parsed.val_loss == val_loss
    assert parsed.train_time_ms == time_ms
    assert parsed.finished
    assert not parsed.diverged
    assert parsed.notes == []
    assert (parsed.train_loss is not None) == has_train
    assert parsed.val_history[-1] == (step, val_loss)
    steps = [s for s, _ in parsed.val_history]
    assert steps == sorted(steps) and steps[0] == 0


@pytest.mark.parametrize("name", [row[0] for row in UPSTREAM])
def test_file_and_text_parse_alike(name: str) -> None:
    assert parse_log_file(_fixtures_dir() / name) == parse_log(_fixture_text(name))


def test_upstream_details() -> None:
    record04 = parse_log_file(_fixtures_dir() / "record04_muon.txt")
    assert len(record04.val_history) == 51  # every 125 steps, plus the final step 6200
    assert record04.val_history[0] == (0, 10.9264)
    assert record04.train_loss == 3.2533
    assert record04.step_avg_ms == 216.33

    record21 = parse_log_file(_fixtures_dir() / "record21_batchsize.txt")
    assert record21.peak_memory_mib == 29898.0  # allocated, not reserved
    assert record21.step_avg_ms == 100.0
    # The other fixtures have no peak-memory line, whatever the fixture README says.
    assert parse_log_file(_fixtures_dir() / "record12_flexattention.txt").peak_memory_mib is None

    record01 = parse_log_file(_fixtures_dir() / "record01_llmc_main.log")
    assert len(record01.val_history) == 80
    assert record01.train_loss == 3.2217
    assert record01.step_avg_ms is None


def test_truncated_standard_log() -> None:
    lines = _fixture_text("record12_flexattention.txt").splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if line.startswith("step:1001/1875"))
    parsed = parse_log("".join(lines[: cut + 5]))
    assert parsed.format == "standard"
    assert not parsed.finished
    assert parsed.step == 1000
    assert parsed.total_steps == 1875
    assert parsed.val_loss == 3.5195
    assert parsed.train_time_ms == 160251.0
    assert parsed.val_history[-1] == (1000, 3.5195)
    assert any("step 1005 of 1875" in note for note in parsed.notes)


def test_truncated_llmc_log() -> None:
    lines = _fixture_text("record01_llmc_main.log").splitlines(keepends=True)
    after_eval = lines.index("s:10000 trl:3.3851 lr:0.000306 norm:0.30\n")
    parsed = parse_log("".join(lines[: after_eval + 1]))
    assert parsed.format == "llmc"
    assert (parsed.step, parsed.val_loss) == (10000, 3.3924)
    assert not parsed.finished  # the eval at step 10000 was followed by training, so not the last
    assert parsed.train_time_ms is None and parsed.total_steps is None

    mid_run = parse_log("".join(lines[: after_eval + 20]))
    assert not mid_run.finished
    assert mid_run.step == 10000


STANDARD_RUN = (
    "step:0/3 val_loss:10.8258 train_time:0ms step_avg:nanms\n"
    "step:1/3 train_loss:9.5 train_time:40000ms step_avg:nanms\n"
    "step:2/3 train_loss:7.25 train_time:100ms step_avg:nanms\n"
    "step:3/3 train_loss:6.5 train_time:200ms step_avg:100.00ms\n"
    "step:3/3 val_loss:6.4 train_time:210ms step_avg:105.00ms\n"
)


def test_noise_and_extra_fields() -> None:
    text = (
        "Running pytorch 2.6.0\n"
        "| 0  NVIDIA H100 80GB HBM3   On  |   5789MiB / 81559MiB |\n"
        "\x00\x01\x7f\ufffd garbage s:xx tel: step:a/b\n"
        "substep:2/3 val_loss:0.001 train_time:1ms\n"  # `step:` inside a word is not a step
        "[rank0]: step:0/3 val_loss:10.8 train_time:0ms step_avg:nanms tokens:0\n"
        "2025-01-01 12:00:00 step:3/3 val_loss:3.2 lr:0.1 train_time:1234ms step_avg:411.33ms mem:5GiB\n"
        "peak memory consumption: 1.5 GiB\n"
    )
    parsed = parse_log(text)
    assert parsed.format == "standard"
    assert parsed.val_history == [(0, 10.8), (3, 3.2)]
    assert (parsed.val_loss, parsed.train_time_ms, parsed.step_avg_ms) == (3.2, 1234.0, 411.33)
    assert parsed.finished
    assert parsed.peak_memory_mib == 1536.0
    assert parsed.notes == []


def test_nan_and_inf_losses_mean_divergence() -> None:
    parsed = parse_log(STANDARD_RUN.replace("val_loss:6.4", "val_loss:nan"))
    assert parsed.diverged
    assert parsed.val_loss is not None and math.isnan(parsed.val_loss)
    assert parsed.finished  # it did run to the end; validity is the scorer's call
    assert any("not finite from step 3" in note for note in parsed.notes)

    train_inf = parse_log(STANDARD_RUN.replace("train_loss:7.25", "train_loss:inf"))
    assert train_inf.diverged and train_inf.val_loss == 6.4

    llmc = parse_log("s:0 tel:11.0\ns:0 trl:11.0 lr:0.1 norm:1.0\ns:1 trl:-nan lr:0.1 norm:nan\ns:2 tel:nan\n")
    assert llmc.diverged and llmc.finished
    assert llmc.train_loss is not None and math.isnan(llmc.train_loss)


def test_nan_survives_json_round_trip() -> None:
    parsed = parse_log(STANDARD_RUN.replace("val_loss:6.4", "val_loss:nan"))
    back = ParsedLog.model_validate_json(parsed.model_dump_json())
    assert back.val_loss is not None and math.isnan(back.val_loss)
    assert back.val_history[0] == (0, 10.8258)


def test_step_avg_nan_is_not_a_measurement() -> None:
    parsed = parse_log("step:1/100 train_loss:9.0 train_time:40000ms step_avg:nanms\n")
    assert parsed.step_avg_ms is None
    assert not parsed.diverged
    assert parsed.notes == ["no validation line found"]


def test_empty_and_garbage_input() -> None:
    for text in ["", "\n\r\n", "\x00" * 1000, "hello world\n"]:
        parsed = parse_log(text)
        assert parsed.format == "unknown"
        assert parsed.val_loss is None and parsed.step is None and parsed.train_time_ms is None
        assert not parsed.finished and not parsed.diverged
        assert parsed.val_history == []
        assert parsed.notes == ["no training-metric lines found"]


def test_crlf_log_parses_like_lf() -> None:
    text = _fixture_text("record15_unetvalueembeds.txt")
    assert parse_log(text.replace("\n", "\r\n")) == parse_log(text)


def test_progress_bar_carriage_returns() -> None:
    text = "loading 10%\rloading 100%\rstep:3/3 val_loss:3.1 train_time:5ms step_avg:1.67ms\r\n"
    parsed = parse_log(text)
    assert (parsed.val_loss, parsed.train_time_ms, parsed.finished) == (3.1, 5.0, True)


def test_last_line_cut_mid_number() -> None:
    complete = STANDARD_RUN.rstrip("\n")
    # Cut inside the val loss: 6.4 could have been 6.45, so the final line does not count.
    cut_loss = parse_log(complete[: complete.rindex("val_loss:6.4") + len("val_loss:6")])
    assert not cut_loss.finished
    assert cut_loss.val_history == [(0, 10.8258)]
    assert "last line is cut off; its final field was ignored" in cut_loss.notes

    # Cut inside the train time: the loss is whole, the time is not known.
    cut_time = parse_log(complete[: complete.rindex("train_time:210") + len("train_time:21")])
    assert cut_time.finished and cut_time.val_loss == 6.4
    assert cut_time.train_time_ms is None
    assert any("no readable train_time" in note for note in cut_time.notes)

    # Cut inside the last field: everything the scorer needs is there.
    cut_avg = parse_log(complete[:-3])
    assert (cut_avg.finished, cut_avg.val_loss, cut_avg.train_time_ms) == (True, 6.4, 210.0)

    # An unterminated line that ends with its unit is whole.
    whole = parse_log(complete)
    assert whole.notes == [] and whole == parse_log(STANDARD_RUN)

    llmc = parse_log("s:0 tel:11.0\ns:0 trl:11.0 lr:0.1 norm:1.0\ns:1 tel:3.27")
    assert llmc.val_history == [(0, 11.0)] and not llmc.finished


def test_binary_garbage_file(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_bytes(
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\n"
        + STANDARD_RUN.encode()[:60]
        + b"\x80\x81\n"
        + STANDARD_RUN.encode()
        + b"\xc3\x28 trailing junk\n"
    )
    parsed = parse_log_file(log)
    assert (parsed.val_loss, parsed.train_time_ms, parsed.finished) == (6.4, 210.0, True)


def test_utf16_file(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    log.write_text(STANDARD_RUN.replace("\n", "\r\n"), encoding="utf-16")
    assert parse_log_file(str(log)) == parse_log(STANDARD_RUN)


def test_chunk_boundaries_do_not_matter(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _fixture_text("record21_batchsize.txt").replace("\n", "\r\n")
    expected = parse_log(text)
    monkeypatch.setattr(logparse, "_CHUNK_CHARS", 7)  # splits lines, numbers and CRLF pairs
    assert parse_log(text) == expected


def test_restarted_run_keeps_last_validation() -> None:
    parsed = parse_log(STANDARD_RUN.replace("step:3/3 val_loss:6.4", "step:2/3 val_loss:7.0") + STANDARD_RUN)
    assert parsed.finished and parsed.val_loss == 6.4
    assert len(parsed.val_history) == 4
    assert any("went back" in note for note in parsed.notes)


def test_unfinished_standard_log_without_final_val() -> None:
    parsed = parse_log(STANDARD_RUN.replace("step:3/3 val_loss:6.4 train_time:210ms step_avg:105.00ms\n", ""))
    assert not parsed.finished
    assert parsed.step == 0 and parsed.val_loss == 10.8258
    assert parsed.train_loss == 6.5


def test_mixed_formats_keep_the_first() -> None:
    parsed = parse_log(STANDARD_RUN + "s:5 tel:1.0\n")
    assert parsed.format == "standard" and parsed.val_loss == 6.4
    assert "1 llm.c-format line(s) ignored" in parsed.notes


def test_hostile_lines_stay_fast() -> None:
    digits = "9" * 200_000
    text = (
        f"step:{digits}/{digits} val_loss:{digits}x\n"
        f"peak memory {digits}\n"
        f"s:{digits} tel:{digits}\n"
        f"step:1/2 val_loss:{digits}{'1.' * 50_000}\n" + "step:" * 100_000 + "\n" + "x" * 3_000_000 + STANDARD_RUN
    )
    start = time.perf_counter()
    parsed = parse_log(text)
    assert time.perf_counter() - start < 5.0
    assert parsed.val_loss == 6.4 and parsed.finished
