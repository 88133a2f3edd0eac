"""Manifests: loading, and one-line errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import ManifestError
from harness.manifests.tracks import all_tasks, get_task, load_track


def test_toy_track_loads(toy_home: Path) -> None:
    track = load_track("toy")
    assert [r.index for r in track.records()] == [0, 1]
    task = get_task("toy-0")
    assert task.hints.levels == ["pseudocode", "text", "paper"]
    # Hints are verbatim: indentation survives.
    assert "\n    RATE = RATE * 2" in (task.hints.pseudocode or "")
    assert task.rules == ["Keep the log format."]
    assert task.target_val_loss == 1.0
    assert [t.id for t in all_tasks("toy")] == ["toy-0"]


def test_malformed_manifest_names_file_and_field(toy_home: Path) -> None:
    path = toy_home / "tasks" / "toy" / "toy-0" / "task.toml"
    path.write_text(path.read_text().replace("index = 0", 'index = "first"'))
    with pytest.raises(ManifestError) as err:
        load_track("toy").tasks()
    assert str(path) in str(err.value) and "'index'" in str(err.value)


def test_bad_toml_and_unknown_field(toy_home: Path) -> None:
    rec = next((toy_home / "records" / "toy").glob("00-*/record.toml"))
    rec.write_text(rec.read_text() + "colour = 'red'\n")
    with pytest.raises(ManifestError, match="colour"):
        load_track("toy").records()
    rec.write_text("index = [\n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        load_track("toy").records()


def test_unknown_names(toy_home: Path) -> None:
    with pytest.raises(ManifestError, match="unknown track"):
        load_track("nope")
    with pytest.raises(ManifestError, match="speedrun tasks list"):
        get_task("toy-9")


def test_shipped_tracks_are_valid() -> None:
    for task in all_tasks():
        assert task.from_record and task.to_record
