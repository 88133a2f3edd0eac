"""The NanoGPT track's data: GPT-2 tokens of FineWeb, as the speedrun itself downloads them.

The speedrun reads pre-tokenised shards from the Hugging Face dataset `kjj0/fineweb10B-gpt2`
(modded-nanogpt's `data/cached_fineweb10B.py`): `fineweb_val_000000.bin` and
`fineweb_train_000001.bin` ... `fineweb_train_000103.bin`, 100M tokens each, in the `.bin`
layout of `harness.data.shards`. Shards already in the data directory are verified and
kept, so a directory of shards the user has (`--data-dir`) needs no network at all.
"""

from __future__ import annotations

import importlib
import inspect
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness import paths
from harness.data.shards import ShardHeader, TrackData, read_header
from harness.errors import DataError

Progress = Callable[[str], None]

REPO_ID = "kjj0/fineweb10B-gpt2"
VAL_SHARD = "fineweb_val_000000.bin"
TRAIN_GLOB = "fineweb_train_*.bin"
VAL_GLOB = "fineweb_val_*.bin"
#: Training shards the dataset holds (10.3B tokens).
MAX_TRAIN_SHARDS = 103
#: Enough for one run of every record without wrapping around: record 1 reads
#: 24576 steps x 262144 tokens = 6.44B tokens (records/nanogpt/*/record.toml, settings.train_shards).
FULL_RUN_SHARDS = 65
#: The validation tokens every run evaluates on (the track's val_tokens).
VAL_TOKENS = 10_485_760
#: Seconds to wait for the hub's metadata request: an unreachable hub fails fast instead of hanging.
ETAG_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 5.0


def train_shard(i: int) -> str:
    return f"fineweb_train_{i:06d}.bin"


def default_dir() -> Path:
    return paths.data_dir("fineweb")


def prepare_fineweb(
    data_dir: Path | None = None, *, train_shards: int | None = None, progress: Progress | None = None
) -> TrackData:
    """Download what is missing of the validation shard and `train_shards` training shards; verify all.

    `train_shards` defaults to `FULL_RUN_SHARDS`. Downloads resume where an interrupted one
    stopped (the hub keeps the partial file under `<data_dir>/.cache/huggingface/`).
    """
    report = progress or (lambda _m: None)
    root = Path(data_dir) if data_dir else default_dir()
    n = FULL_RUN_SHARDS if train_shards is None else train_shards
    if not 1 <= n <= MAX_TRAIN_SHARDS:
        raise DataError(f"--train-shards must be between 1 and {MAX_TRAIN_SHARDS} (the dataset's size), got {n}")
    names = [VAL_SHARD, *(train_shard(i) for i in range(1, n + 1))]
    todo: list[tuple[str, bool]] = []  # (name, whether a bad copy is there to replace)
    for name in names:
        path = root / name
        if path.is_file():
            try:
                _check(path)
                continue
            except DataError as exc:
                report(f"{name}: {exc}; downloading it again")
                todo.append((name, True))
        else:
            todo.append((name, False))
    if todo:
        if _offline():
            raise DataError(
                f"{len(todo)} FineWeb shard(s) missing or damaged in {root} (first: {todo[0][0]}) and HF_HUB_OFFLINE "
                "is set; unset it to download, or copy the shards there (see `speedrun data prepare --help`)"
            )
        _probe_hub()
        root.mkdir(parents=True, exist_ok=True)
        report(f"downloading {len(todo)} of {len(names)} shards from the Hugging Face dataset {REPO_ID} into {root}")
        for k, (name, force) in enumerate(todo, 1):
            started = time.monotonic()
            _download(root, name, force=force, report=report, label=f"{name} ({k}/{len(todo)})")
            header = _check(root / name)
            size_mb = header.file_size / 1e6
            report(f"{name} ({k}/{len(todo)}): {size_mb:.0f} MB in {time.monotonic() - started:.0f} s, verified")
    else:
        report(f"all {len(names)} shards present in {root}")
    return fineweb_data(root, progress=progress)


def fineweb_data(data_dir: Path | None = None, progress: Progress | None = None) -> TrackData:
    """The prepared shards, verified (headers and sizes: one small read per shard)."""
    root = Path(data_dir) if data_dir else default_dir()
    val = root / VAL_SHARD
    fix = "run `speedrun data prepare nanogpt`, or pass --data-dir to a directory of the speedrun's shards"
    if not val.is_file():
        raise DataError(f"no FineWeb validation shard at {val}; {fix}")
    _check(val)
    train = sorted(root.glob(TRAIN_GLOB))
    if not train:
        raise DataError(f"no FineWeb training shards ({TRAIN_GLOB}) in {root}; {fix}")
    tokens = sum(_check(p).num_tokens for p in train)
    if progress:
        progress(f"FineWeb in {root}: {len(train)} training shards ({tokens / 1e9:.2f}B tokens) and {VAL_SHARD}")
    return TrackData(data_dir=root, train_glob=str(root / TRAIN_GLOB), val_glob=str(root / VAL_GLOB))


def _check(path: Path) -> ShardHeader:
    header = read_header(path)
    if path.name == VAL_SHARD and header.num_tokens < VAL_TOKENS:
        raise DataError(
            f"shard {path} holds {header.num_tokens:,} tokens, fewer than the {VAL_TOKENS:,} validation tokens "
            "every run evaluates on; delete it and prepare the data again"
        )
    return header


def _offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def _probe_hub() -> None:
    """Fail in seconds when the hub cannot be reached: the hub client would retry each request
    with backoff for about half a minute before giving up."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # only the proxy knows whether the hub is reachable
    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise DataError(
            f"cannot reach {host}:{port} to download FineWeb ({exc.strerror or exc}); check the network "
            "(or HF_ENDPOINT, HTTPS_PROXY), or copy the shards into the data directory and pass --data-dir"
        ) from None


def _download(root: Path, name: str, *, force: bool, report: Progress, label: str) -> None:
    try:
        from huggingface_hub import hf_hub_download
    except ModuleNotFoundError:
        raise DataError("huggingface_hub is missing; run `pip install 'speedrun[nanogpt]'`") from None
    kwargs: dict[str, Any] = {}
    if "tqdm_class" in inspect.signature(hf_hub_download).parameters:
        kwargs["tqdm_class"] = _reporting_tqdm(report, label)
    try:
        hf_hub_download(
            repo_id=REPO_ID,
            filename=name,
            repo_type="dataset",
            local_dir=root,
            force_download=force,
            etag_timeout=ETAG_TIMEOUT_S,
            **kwargs,
        )
    except Exception as exc:  # the hub raises many kinds (HTTP, offline, OS, xet); all mean the same here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"downloading {name} from the Hugging Face dataset {REPO_ID} failed ({reason}); check the network "
            f"(or HF_ENDPOINT) and run again to resume, or copy the shards into {root}"
        ) from exc


def _reporting_tqdm(report: Progress, label: str) -> type[Any]:
    """A silent tqdm for the hub that reports each quarter of a download through `report`:
    the library emits progress, the CLI decides how to show it."""
    # Through importlib so that the class is Any whether or not tqdm's stubs are installed.
    base: Any = importlib.import_module("tqdm.std").tqdm

    class Reporter(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            self._total = int(kwargs.get("total") or 0)
            self._quarter = 4 * self._done // self._total if self._total else 0

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            if self._total:
                quarter = min(4, 4 * self._done // self._total)
                if quarter > self._quarter:
                    self._quarter = quarter
                    report(f"{label}: {25 * quarter}% of {self._total / 1e6:.0f} MB")
            return None

    return Reporter
