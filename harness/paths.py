"""Where things live: the project's shipped manifests and the user's cache."""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout that holds `tasks/`, `records/` and `containers/`.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_root() -> Path:
    """`$SPEEDRUN_HOME` (another tree of manifests, e.g. a test's) or this checkout."""
    return Path(os.environ.get("SPEEDRUN_HOME") or PROJECT_ROOT)


def tasks_dir() -> Path:
    return project_root() / "tasks"


def records_dir() -> Path:
    return project_root() / "records"


def containers_dir() -> Path:
    return project_root() / "containers"


def cache_dir() -> Path:
    """The user's cache: `$SPEEDRUN_CACHE`, else `$XDG_CACHE_HOME/speedrun`, else `~/.cache/speedrun`."""
    if env := os.environ.get("SPEEDRUN_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "speedrun"


def data_dir(track: str) -> Path:
    """Prepared shards of a track: `$SPEEDRUN_DATA_DIR/<track>` if set, else under the cache."""
    if env := os.environ.get("SPEEDRUN_DATA_DIR"):
        return Path(env).expanduser() / track
    return cache_dir() / "data" / track
