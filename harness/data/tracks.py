"""The data a track's scripts read, in the terms of the training contract (env variables)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness import paths
from harness.data.fineweb import fineweb_data
from harness.data.mini import prepare_mini
from harness.data.shards import TrackData
from harness.errors import ConfigError
from harness.eval.evaluator import MODEL_OUT_ENV
from harness.execution.environment import THREAD_VARS
from harness.manifests.tracks import Track


def ensure_data(track: Track, data_dir: Path | None = None, progress: Callable[[str], None] | None = None) -> TrackData:
    """Prepare (or find) the track's data; fast when it is already there."""
    if track.dataset == "mini":
        mini = prepare_mini(data_dir, progress=progress)
        return TrackData(
            data_dir=mini.shards_dir, train_glob=mini.train_glob, val_glob=mini.val_glob, holdout_glob=mini.holdout_glob
        )
    if track.dataset == "fineweb":
        return fineweb_data(data_dir, progress=progress)
    if track.dataset == "none":
        empty = Path(data_dir) if data_dir else paths.cache_dir() / "data" / "none"
        empty.mkdir(parents=True, exist_ok=True)
        return TrackData(data_dir=empty, train_glob=str(empty / "train_*.bin"), val_glob=str(empty / "val_*.bin"))
    raise ConfigError(f"no data preparation is defined for dataset {track.dataset!r}")


def run_env(track: Track, data: TrackData, *, seed: int, target_val_loss: float) -> dict[str, str]:
    """The documented variables a training script gets, and nothing else of the harness's."""
    threads = run_threads(track)
    return {
        **track.env,
        **({var: str(threads) for var in THREAD_VARS} if threads else {}),
        "NANOGPT_TRAIN_FILES": data.train_glob,
        "NANOGPT_VAL_FILES": data.val_glob,
        "NANOGPT_VAL_TOKENS": str(track.val_tokens),
        "SPEEDRUN_SEED": str(seed),
        "SPEEDRUN_TARGET_VAL_LOSS": repr(target_val_loss),
        **({MODEL_OUT_ENV: track.model_file} if track.model_file else {}),
    }


def run_threads(track: Track) -> int | None:
    """The thread count of a run: the user's OMP_NUM_THREADS, else the track's default."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return track.threads


def planned_data(track: Track, data_dir: Path | None = None) -> TrackData:
    """Where the data will be, without preparing anything (for `--dry-run`)."""
    root = Path(data_dir) if data_dir else paths.data_dir(track.dataset if track.dataset != "none" else track.name)
    if track.dataset == "mini":
        from harness.data.mini import SHARDS_DIR, split_glob

        return TrackData(
            data_dir=root / SHARDS_DIR,
            train_glob=split_glob(root, "train"),
            val_glob=split_glob(root, "val"),
            holdout_glob=split_glob(root, "holdout"),
        )
    if track.dataset == "fineweb":
        return TrackData(
            data_dir=root, train_glob=str(root / "fineweb_train_*.bin"), val_glob=str(root / "fineweb_val_*.bin")
        )
    return TrackData(data_dir=root, train_glob=str(root / "train_*.bin"), val_glob=str(root / "val_*.bin"))
