"""Small file-system helpers the whole harness shares: atomic writes, file digests, locks."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from filelock import FileLock


def write_bytes_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Write `path` so that readers see either the old file or the complete new one.

    The temporary file lives in the same directory so that `os.replace` is a rename within
    one filesystem. It is created with mode 0o666 minus the umask, like an ordinary file,
    because the docker executor mounts data for a non-root user: a 0600 file (what
    `tempfile` would make) could not be read. It is fsynced before the rename so that a
    crash cannot leave a complete name with missing contents.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """`write_bytes_atomic` for text (run.json, result.json, confirm.json, calibrations)."""
    write_bytes_atomic(path, [text.encode()])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock held through `path` (a hidden `.name.lock` beside what it guards)."""
    with FileLock(str(path)):
        yield
