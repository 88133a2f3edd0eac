"""Keys and endpoints from the environment, after `.env` in the working directory.

Executors build a candidate's environment from an allow-list, so keys loaded here do not
reach a training run.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_dotenv_lock = threading.Lock()
_dotenv_loaded = False


def env(name: str) -> str | None:
    """An environment variable, after loading `.env` from the working directory (once).

    Variables already set win over the file.
    """
    global _dotenv_loaded
    with _dotenv_lock:
        if not _dotenv_loaded:
            from dotenv import load_dotenv

            load_dotenv(Path.cwd() / ".env", override=False)
            _dotenv_loaded = True
    return os.environ.get(name) or None


def reset() -> None:
    """Read `.env` again at the next lookup (tests that change the working directory)."""
    global _dotenv_loaded
    with _dotenv_lock:
        _dotenv_loaded = False
