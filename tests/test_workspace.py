"""The harness reads a finished candidate's workspace without following its links."""

from __future__ import annotations

import os
from pathlib import Path

from harness.search.workspace import source_files


def test_links_binaries_and_large_files_are_not_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("sk-live-do-not-leak")
    ws = tmp_path / "ws"
    (ws / "pkg").mkdir(parents=True)
    (ws / "train.py").write_text("print('hi')\n")
    (ws / "pkg" / "util.py").write_text("X = 1\n")
    (ws / "leak.py").symlink_to(secret / "key.txt")
    (ws / "linked_dir").symlink_to(secret, target_is_directory=True)
    (ws / "weights.json").write_bytes(b"\xff\xfe\x00binary")
    (ws / "big.txt").write_text("x" * 2048)
    os.mkfifo(ws / "pipe.txt")  # opening a FIFO for reading would block forever

    files = source_files(ws, max_bytes=1024)

    assert files == {"train.py": "print('hi')\n", "pkg/util.py": "X = 1\n"}
    assert all("sk-live" not in text for text in files.values())


def test_suffix_filter_and_missing_or_linked_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "train.py").write_text("a\n")
    (ws / "notes.md").write_text("b\n")
    assert source_files(ws) == {"train.py": "a\n"}
    assert source_files(ws, suffixes=None) == {"train.py": "a\n", "notes.md": "b\n"}
    assert source_files(tmp_path / "absent") == {}
    (tmp_path / "link").symlink_to(ws, target_is_directory=True)
    assert source_files(tmp_path / "link") == {}
