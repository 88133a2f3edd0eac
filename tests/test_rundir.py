"""Reading run directories back: bounded, never through a link, never writing."""

from __future__ import annotations

import os
from pathlib import Path

from harness.rundir import node_code, read_bounded, read_journal, run_dirs
from harness.search.journal import JournalEvent, Node


def test_links_are_not_followed_anywhere_on_the_path(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("API_KEY=sk-live")
    run = tmp_path / "run"
    (run / "nodes" / "0" / "workspace").mkdir(parents=True)
    (run / "nodes" / "0" / "run.log").symlink_to(secret)
    (run / "nodes" / "1").mkdir()
    (run / "nodes" / "1" / "workspace").symlink_to(tmp_path)  # a linked directory on the way
    (tmp_path / "train.py").write_text("print('outside the run')")
    assert read_bounded(run, "nodes/0/run.log", 1000) is None
    assert node_code(run, 1, "train.py") is None
    assert read_bounded(run, "../secret.txt", 1000) is None
    assert read_bounded(run, "/etc/hostname", 1000) is None


def test_a_fifo_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "run.log")  # opening it for reading would block without O_NONBLOCK
    assert read_bounded(tmp_path, "run.log", 1000) is None


def test_large_files_keep_their_head_and_tail(tmp_path: Path) -> None:
    (tmp_path / "run.log").write_text("HEAD\n" + "x" * 10_000 + "\nTAIL\n")
    got = read_bounded(tmp_path, "run.log", 1000)
    assert got is not None
    assert got.text.startswith("HEAD") and got.text.endswith("TAIL\n")
    assert got.cut == got.size - 1000 and len(got.text) <= 1001


def test_journal_is_replayed_read_only_with_a_half_written_line(tmp_path: Path) -> None:
    node = Node(id=0, parent=None, action="draft", status="buggy")
    lines = [
        JournalEvent(event="started", node_id=0, action="draft").model_dump_json(),
        JournalEvent(event="started", node_id=1, action="improve", parent=0).model_dump_json(),
        JournalEvent(event="node", node_id=0, node=node).model_dump_json(),
    ]
    text = "\n".join(lines) + '\n{"schema_version": 1, "event": "no'
    (tmp_path / "journal.jsonl").write_text(text)
    view = read_journal(tmp_path)
    assert list(view.nodes) == [0] and view.running == {1: ("improve", 0)}
    assert (tmp_path / "journal.jsonl").read_text() == text  # a live run's file is not touched


def test_linked_run_directories_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "run.json").write_text("{}")
    results = tmp_path / "results"
    (results / "real").mkdir(parents=True)
    (results / "real" / "run.json").write_text("{}")
    (results / "linked").symlink_to(tmp_path / "elsewhere")
    assert [p.name for p in run_dirs(results)] == ["real"]
