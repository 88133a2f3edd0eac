"""Fetched files are what the fetch imported: `fetched.json` lists each file's sha256, and every
read of a fetched record's code or a task's hints is checked against it first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from harness import paths
from harness.errors import SpeedrunError
from harness.fsutil import sha256_file

MANIFEST = "fetched.json"


class FetchError(SpeedrunError):
    """The records could not be fetched, or a fetched file no longer matches its checksum."""


class FetchManifest(BaseModel):
    """What `speedrun records fetch` imported: written last, so a complete import is one that has it."""

    schema_version: int = 1
    track: str
    source: str
    commit: str
    fetched_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    #: Path relative to the cache root -> sha256 of its bytes.
    files: dict[str, str]


def manifest_path(track: str) -> Path:
    return paths.cache_dir() / "records" / track / MANIFEST


def read_manifest(track: str) -> FetchManifest | None:
    path = manifest_path(track)
    if not path.is_file():
        return None
    try:
        return FetchManifest.model_validate_json(path.read_text())
    except (ValidationError, ValueError):
        raise FetchError(f"{path} is unreadable; run `speedrun records fetch --track {track}` again") from None


def require_fetched(track: str) -> None:
    """Fail with the command to run when a fetched track's code and hints are not in the cache."""
    if read_manifest(track) is None:
        raise FetchError(
            f"the {track} track's record code and hints are not in the cache ({paths.cache_dir()}); "
            f"run `speedrun records fetch --track {track}` first"
        )


def verify_fetched(path: Path) -> None:
    """Check a fetched file, or every fetched file under a directory, against `fetched.json`.

    A no-op for paths outside the cache's `records/<track>/` and `tasks/<track>/` (shipped
    tracks), and for a track that was never fetched and has nothing there. Otherwise a file
    that is missing, changed, or not from a fetch is a `FetchError` naming it.
    """
    cache = paths.cache_dir()
    try:
        rel = Path(path).relative_to(cache)
    except ValueError:
        return
    if len(rel.parts) < 3 or rel.parts[0] not in ("records", "tasks"):
        return
    track = rel.parts[1]
    manifest = read_manifest(track)
    target = cache / rel
    refetch = f"run `speedrun records fetch --track {track}` again"
    if manifest is None:
        if target.exists():
            raise FetchError(f"{target} has no {MANIFEST} to verify it against; {refetch}")
        return
    prefix = rel.as_posix()
    expected = {f: h for f, h in manifest.files.items() if f == prefix or f.startswith(prefix + "/")}
    for name, digest in sorted(expected.items()):
        file = cache / name
        if not file.is_file():
            raise FetchError(f"fetched file {file} is missing; {refetch}")
        if sha256_file(file) != digest:
            raise FetchError(
                f"fetched file {file} was modified (sha256 differs from {MANIFEST}); {refetch} to restore it"
            )
    if target.is_dir():
        extra = sorted(
            p for p in target.rglob("*") if p.is_file() and p.relative_to(cache).as_posix() not in manifest.files
        )
        if extra:
            raise FetchError(f"{extra[0]} is not from `speedrun records fetch`; remove it or {refetch}")
    elif target.is_file() and prefix not in expected:
        raise FetchError(f"{target} is not from `speedrun records fetch`; remove it or {refetch}")
