"""A Debian base image made without a registry: `debootstrap` a minimal tree and `docker import`
it, for engines that can pull nothing (air-gapped clusters, CI here). The track images build
`FROM` it (`images.py`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.execution.images import (
    BASE_PACKAGES,
    BUILD_TIMEOUT_S,
    DEFAULT_BASE,
    BuildError,
    Progress,
    docker_client,
    image_exists,
    last_line,
)


def base_image_from_debootstrap(
    tag: str = DEFAULT_BASE,
    *,
    suite: str = "bookworm",
    mirror: str | None = None,
    packages: tuple[str, ...] = BASE_PACKAGES,
    progress: Progress | None = None,
    docker_host: str | None = None,
) -> str:
    """Make a Debian base image without a registry: `debootstrap` a minimal tree and import it.

    Cached: returns at once when `tag` exists. Needs root and `debootstrap`, and
    reaches only the Debian mirror (by default the one apt on this machine uses).
    """
    report = progress or (lambda _line: None)
    client = docker_client(docker_host, timeout=BUILD_TIMEOUT_S)
    if image_exists(client, tag):
        report(f"{tag} already present")
        return tag
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is not installed; `apt-get install debootstrap` (Debian/Ubuntu)")
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root; run as root, or pass a registry base with `--base`")
    mirror = mirror or apt_mirror()
    with tempfile.TemporaryDirectory(prefix="speedrun-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(root)]
        report(f"debootstrap {suite} from {mirror} (+ {', '.join(packages)})")
        proc = subprocess.run([*cmd, mirror], capture_output=True, text=True)
        if proc.returncode != 0:
            log = root / "debootstrap" / "debootstrap.log"
            detail = log.read_text()[-2000:] if log.is_file() else proc.stderr or proc.stdout
            raise BuildError(f"debootstrap failed: {last_line(detail)}")
        # apt's package lists and caches are dead weight in an image.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (root / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        report(f"importing the tree as {tag}")
        from docker.utils import parse_repository_tag

        repo, version = parse_repository_tag(tag)
        tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            client.api.import_image_from_stream(
                tar.stdout, repository=repo, tag=version or "latest", changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]']
            )
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                raise BuildError(f"tar of the debootstrap tree failed (exit {tar.returncode})")
    if not image_exists(client, tag):
        raise BuildError(f"docker import did not produce {tag}")
    report(f"made {tag}")
    return tag


def apt_mirror(sources: list[Path] | None = None, default: str = "http://deb.debian.org/debian") -> str:
    """The Debian mirror apt uses here (deb822 or one-line sources), so debootstrap reaches the same one."""
    if sources is None:
        sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.suffix not in ("", ".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for pattern in (r"^URIs:\s*(\S+/debian)/?\s*$", r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+\S+"):
            if match := re.search(pattern, text, re.MULTILINE):
                return match.group(1)
    return default
