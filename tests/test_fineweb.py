"""FineWeb shards for the nanogpt track, without the network: synthetic shards in a temporary
directory, and a stand-in for the hub's download function."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.data import fineweb
from harness.data.fineweb import FULL_RUN_SHARDS, VAL_SHARD, VAL_TOKENS, fineweb_data, prepare_fineweb, train_shard
from harness.data.shards import HEADER_BYTES, write_shard
from harness.errors import DataError

REPO = Path(__file__).resolve().parents[1]


def write_fineweb(root: Path, train: int = 2, val_tokens: int = VAL_TOKENS) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write_shard(root / VAL_SHARD, np.arange(val_tokens, dtype=np.uint32) % 50257)
    for i in range(1, train + 1):
        write_shard(root / train_shard(i), np.full(1000 + i, i, dtype=np.uint16))
    return root


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace the hub: record the calls; fail the test if the hub would be reached."""
    calls: list[dict[str, Any]] = []

    def refuse(**kwargs: Any) -> str:
        calls.append(kwargs)
        raise AssertionError(f"the hub was called for {kwargs['filename']}")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refuse)
    monkeypatch.setattr(fineweb, "_probe_hub", lambda: None)
    return calls


def test_prepared_shards_are_found_and_verified(tmp_path: Path) -> None:
    root = write_fineweb(tmp_path / "fw", train=3)
    messages: list[str] = []
    data = fineweb_data(root, progress=messages.append)
    assert data.data_dir == root
    assert data.train_glob == str(root / "fineweb_train_*.bin")
    assert data.val_glob == str(root / "fineweb_val_*.bin")
    assert "3 training shards" in messages[0]


def test_default_directory_is_in_the_cache(isolated_cache: Path) -> None:
    write_fineweb(isolated_cache / "data" / "fineweb")
    assert fineweb_data().data_dir == isolated_cache / "data" / "fineweb"


@pytest.mark.parametrize("what", ["val", "train"])
def test_missing_shards_say_what_to_run(tmp_path: Path, what: str) -> None:
    root = write_fineweb(tmp_path / "fw")
    for p in root.glob(f"fineweb_{what}_*.bin"):
        p.unlink()
    with pytest.raises(DataError) as err:
        fineweb_data(root)
    assert "speedrun data prepare nanogpt" in str(err.value) and "\n" not in str(err.value)


def test_a_short_validation_shard_is_refused(tmp_path: Path) -> None:
    root = write_fineweb(tmp_path / "fw", val_tokens=VAL_TOKENS - 1)
    with pytest.raises(DataError, match="fewer than the 10,485,760 validation tokens"):
        fineweb_data(root)


def test_a_truncated_or_foreign_shard_is_named(tmp_path: Path) -> None:
    root = write_fineweb(tmp_path / "fw")
    shard = root / train_shard(2)
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DataError, match=f"shard {shard} is truncated"):
        fineweb_data(root)
    shard.write_bytes(b"\0" * HEADER_BYTES)
    with pytest.raises(DataError, match="magic 0"):
        fineweb_data(root)


def test_prepare_uses_shards_already_there_without_the_hub(tmp_path: Path, no_hub: list[dict[str, Any]]) -> None:
    root = write_fineweb(tmp_path / "fw", train=2)
    messages: list[str] = []
    data = prepare_fineweb(root, train_shards=2, progress=messages.append)
    assert data.data_dir == root and no_hub == []
    assert any("all 3 shards present" in m for m in messages)


def test_offline_with_missing_shards_is_one_clear_line(
    tmp_path: Path, no_hub: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = write_fineweb(tmp_path / "fw", train=1)
    with pytest.raises(DataError) as err:
        prepare_fineweb(root, train_shards=3)
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and train_shard(2) in message and "\n" not in message
    assert no_hub == []


def test_downloads_go_through_the_hub_and_are_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hub: list[dict[str, Any]]
) -> None:
    root = write_fineweb(tmp_path / "fw", train=1)
    (root / train_shard(1)).write_bytes(b"garbage")  # damaged: fetched again, forcing the hub
    calls: list[dict[str, Any]] = []

    def fake_download(*, tqdm_class: Any = None, **kwargs: Any) -> str:
        calls.append(kwargs)
        if tqdm_class is not None:  # the hub reports bytes through the class it is given
            with tqdm_class(total=4000, initial=0, unit="B") as bar:
                bar.update(4000)
        path = Path(kwargs["local_dir"]) / kwargs["filename"]
        write_shard(path, np.zeros(2000, dtype=np.uint16))
        return str(path)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    messages: list[str] = []
    data = prepare_fineweb(root, train_shards=2, progress=messages.append)
    assert [c["filename"] for c in calls] == [train_shard(1), train_shard(2)]
    assert all(c["repo_id"] == "kjj0/fineweb10B-gpt2" and c["repo_type"] == "dataset" for c in calls)
    assert [c["force_download"] for c in calls] == [True, False]
    assert all(c["etag_timeout"] <= 10 for c in calls), "an unreachable hub must fail fast"
    assert any("100%" in m for m in messages)
    assert len(sorted(Path(data.data_dir).glob("fineweb_train_*.bin"))) == 2


def test_a_hub_error_becomes_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**kwargs: Any) -> str:
        raise OSError("Connection reset by peer\nmore detail")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    monkeypatch.setattr(fineweb, "_probe_hub", lambda: None)
    with pytest.raises(DataError) as err:
        prepare_fineweb(tmp_path / "fw", train_shards=1)
    assert str(err.value).startswith(f"downloading {VAL_SHARD} from the Hugging Face dataset")
    assert "Connection reset by peer" in str(err.value) and "\n" not in str(err.value)


def test_an_unreachable_hub_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(DataError, match=r"cannot reach 127\.0\.0\.1:9"):
        prepare_fineweb(tmp_path / "fw", train_shards=1)


def test_train_shards_must_fit_the_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="between 1 and 103"):
        prepare_fineweb(tmp_path, train_shards=0)
    with pytest.raises(DataError, match="between 1 and 103"):
        prepare_fineweb(tmp_path, train_shards=104)


def test_default_shard_count_covers_every_record() -> None:
    needed = [
        tomllib.loads(p.read_text())["settings"]["train_shards"]
        for p in (REPO / "records" / "nanogpt").glob("*/record.toml")
    ]
    assert len(needed) == 21 and max(needed) == FULL_RUN_SHARDS


def test_cli_prepare(tmp_path: Path, no_hub: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_fineweb(tmp_path / "fw", train=2)
    runner = CliRunner()
    result = runner.invoke(app, ["data", "prepare", "nanogpt", "--data-dir", str(root), "--train-shards", "2"])
    assert result.exit_code == 0, result.output
    assert "ready" in result.output
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["data", "prepare", "nanogpt", "--data-dir", str(root), "--train-shards", "5"])
    assert result.exit_code == 2
    assert "HF_HUB_OFFLINE" in result.output and "Traceback" not in result.output
