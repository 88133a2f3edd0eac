"""Token shards in the modded-nanogpt `.bin` layout.

Both tracks hand training scripts the same file format, so a script written
against the FineWeb shards of the nanogpt track reads the mini track's shards
unchanged: a header of 256 little-endian int32 (magic, version, token count,
then zeros) followed by the tokens as little-endian uint16.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from harness.errors import DataError
from harness.fsutil import write_bytes_atomic

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_BYTES = 2
# The header stores the count as int32; the training scripts trust it as such.
MAX_TOKENS = 2**31 - 1

_HEADER_DTYPE = np.dtype("<i4")
_TOKEN_DTYPE = np.dtype("<u2")


@dataclass(frozen=True)
class ShardHeader:
    """What a shard's header says, after it was checked against the file."""

    path: Path
    version: int
    num_tokens: int

    @property
    def file_size(self) -> int:
        return HEADER_BYTES + TOKEN_BYTES * self.num_tokens


def encode_header(num_tokens: int) -> bytes:
    header = np.zeros(HEADER_INTS, dtype=_HEADER_DTYPE)
    header[0] = MAGIC
    header[1] = VERSION
    header[2] = num_tokens
    return header.tobytes()


def write_shard(path: Path, tokens: npt.NDArray[np.integer]) -> ShardHeader:
    """Write `tokens` (1-D, values 0..65535) as a shard at `path`, atomically.

    Any integer dtype is accepted as long as the values fit, so callers may pass
    the uint8 bytes of a text directly; the file always holds little-endian uint16.
    """
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise ValueError(f"shard tokens must be 1-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"shard tokens must be integers, got dtype {arr.dtype}")
    if arr.size > MAX_TOKENS:
        raise ValueError(f"a shard holds at most {MAX_TOKENS} tokens, got {arr.size}")
    if arr.dtype != _TOKEN_DTYPE:
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 0xFFFF):
            raise ValueError("shard tokens must lie in 0..65535")
        arr = arr.astype(_TOKEN_DTYPE)
    path = Path(path)
    write_bytes_atomic(path, (encode_header(arr.size), np.ascontiguousarray(arr).tobytes()))
    return ShardHeader(path=path, version=VERSION, num_tokens=int(arr.size))


def read_header(path: Path) -> ShardHeader:
    """Read and check a shard's header; a `DataError` names the file and the fault.

    The size check is what catches a truncated download or copy, which the
    header alone cannot reveal; it costs one stat, so callers can afford to
    verify every shard on each start.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise DataError(f"cannot read shard {path}: {e.strerror or e}") from None
    if len(raw) < HEADER_BYTES:
        raise DataError(f"shard {path} is truncated: {size} bytes, shorter than the {HEADER_BYTES}-byte header")
    header = np.frombuffer(raw, dtype=_HEADER_DTYPE)
    magic, version, num_tokens = (int(x) for x in header[:3])
    if magic != MAGIC:
        raise DataError(f"shard {path} has magic {magic}, expected {MAGIC}: not a modded-nanogpt .bin shard")
    if version != VERSION:
        raise DataError(f"shard {path} has version {version}, expected {VERSION}")
    if num_tokens < 0:
        raise DataError(f"shard {path} has a negative token count ({num_tokens})")
    result = ShardHeader(path=path, version=version, num_tokens=num_tokens)
    if size != result.file_size:
        what = "truncated" if size < result.file_size else "longer than its header says"
        raise DataError(
            f"shard {path} is {what}: {size} bytes, header says {num_tokens} tokens "
            f"({result.file_size} bytes); delete it and prepare the data again"
        )
    return result


def read_tokens(path: Path) -> npt.NDArray[np.uint16]:
    """The tokens of a checked shard, memory-mapped read-only (no copy into RAM)."""
    header = read_header(path)
    if header.num_tokens == 0:
        # mmap refuses a zero-length mapping.
        return np.empty(0, dtype=_TOKEN_DTYPE)
    return np.memmap(header.path, dtype=_TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(header.num_tokens,))


class TrackData(BaseModel):
    """Prepared shards: the directory to mount read-only and the globs the scripts get."""

    data_dir: Path
    train_glob: str
    val_glob: str
    #: Shards outside `data_dir` that no run reads, for the harness's own evaluation (None: none).
    holdout_glob: str | None = None
