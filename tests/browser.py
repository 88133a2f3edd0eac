"""Headless Chromium for looking at pages as a person would: a screenshot and the DOM after
scripts ran. Debian's `chromium` (`apt-get install chromium`); tests skip with the reason
where it is missing or cannot start."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
]
TIMEOUT_S = 180


def chromium() -> str | None:
    return next((p for name in ("chromium", "chromium-browser") if (p := shutil.which(name))), None)


def why_not() -> str | None:
    """None when Chromium starts here, else the reason it does not."""
    exe = chromium()
    if exe is None:
        return "chromium is not installed (apt-get install chromium)"
    try:
        out = _run(exe, ["--dump-dom", "data:text/html,<p>ok</p>"])
    except (OSError, subprocess.SubprocessError) as exc:
        return f"chromium does not start: {exc}"
    if "<p>ok</p>" not in out.stdout:
        return f"chromium does not render a page: {out.stderr.strip()[-300:]}"
    return None


def _run(exe: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )


def screenshot(page: Path, out: Path, width: int = 1400, height: int = 3000) -> Path:
    exe = chromium()
    assert exe is not None
    res = _run(exe, [f"--window-size={width},{height}", f"--screenshot={out}", page.resolve().as_uri()])
    assert out.is_file(), res.stderr[-2000:]
    return out


def dom(page: Path, fragment: str = "") -> str:
    """The page's DOM after its scripts ran, serialised."""
    exe = chromium()
    assert exe is not None
    res = _run(exe, ["--virtual-time-budget=3000", "--dump-dom", page.resolve().as_uri() + fragment])
    assert res.stdout, res.stderr[-2000:]
    return res.stdout
