"""Container images for the tracks, built without a registry when need be.

Air-gapped clusters cannot pull `python:3.11-slim` or reach PyPI, so every
input to a build can be local: the base image can be a Debian tree made with
`debootstrap` and imported (`base_image.py`), and Python packages
can come from a directory of wheels (`--wheelhouse`). Where a registry is
reachable the same Dockerfiles build from a public base and PyPI instead.

Dockerfiles live under `containers/`: `containers/cpu/` for the mini track,
`containers/<track>/...` for the others (the nanogpt images pass their own
`context`). Builds use the docker SDK's classic builder, so the Dockerfiles
avoid BuildKit-only syntax.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness import paths
from harness.errors import ConfigError, SpeedrunError

Progress = Callable[[str], None]

#: The base image `base_image_from_debootstrap` makes and the CPU Dockerfile starts from by default.
DEFAULT_BASE = "speedrun-base:bookworm"
#: Debian packages in that base: Python 3.11 and venv (pip comes with venv), certificates for pip.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: Dockerfile directory per track, relative to `containers/`; a track not listed uses its own name.
TRACK_CONTEXTS = {"mini": "cpu"}
#: Images and build steps can take many minutes of silence (pip installing torch); the SDK's
#: default 60 s read timeout would abort them.
BUILD_TIMEOUT_S = 3600
#: Dockerfile directories that install from a wheelhouse, and what goes in it: this machine's
#: own versions, so that a run in the image and a local run use the same code. Without
#: `--wheelhouse`, the build makes one from the package index this machine's pip reaches, so
#: it needs no network of its own (engines on clusters often have none for builds).
WHEELHOUSE_PACKAGES = {"cpu": ("torch", "numpy", "onnx", "onnxscript")}
#: The Python of the images' Debian base, which the wheels must be built for.
IMAGE_PYTHON = "3.11"


class BuildError(SpeedrunError):
    """An image could not be built."""


def image_name(track: str) -> str:
    """The image a track's runs use: the track's `image` setting, else `speedrun-<track>:latest`."""
    from harness.manifests.tracks import load_track

    with contextlib.suppress(SpeedrunError):
        image = load_track(track).image
        if image:
            return image
    return f"speedrun-{track}:latest"


def build_context(track: str) -> Path:
    """The directory holding the Dockerfile of `track`'s default image."""
    return paths.containers_dir() / TRACK_CONTEXTS.get(track, track)


def docker_client(docker_host: str | None = None, *, timeout: int = 60) -> Any:
    """A docker SDK client; `docker_host` overrides `$DOCKER_HOST`. Raises ConfigError when unreachable."""
    try:
        import docker
    except ModuleNotFoundError:
        raise ConfigError("the docker SDK is missing; run `pip install docker`") from None
    try:
        if docker_host:
            client = docker.DockerClient(base_url=docker_host, timeout=timeout)
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        where = docker_host or os.environ.get("DOCKER_HOST") or "the default socket"
        raise ConfigError(
            f"cannot reach a Docker engine at {where} ({_first_line(exc)}); "
            "start it (or set DOCKER_HOST), or use `--executor local`; `speedrun doctor` checks the setup"
        ) from None
    return client


def image_exists(client: Any, image: str) -> bool:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_image(
    track: str,
    *,
    base: str | None = None,
    wheelhouse: Path | None = None,
    tag: str | None = None,
    context: Path | None = None,
    build_args: dict[str, str] | None = None,
    progress: Progress | None = None,
    docker_host: str | None = None,
) -> str:
    """Build `track`'s image and return its tag.

    `base` sets the Dockerfile's `BASE` build argument (a local tag or a registry image);
    `wheelhouse` is a directory of wheels copied into the build context as `wheelhouse/`,
    from which the Dockerfile installs without an index. Without a wheelhouse the
    Dockerfile installs from the network. `context` overrides the Dockerfile directory
    (the nanogpt images pass `containers/nanogpt/<era>`).
    """
    report = progress or (lambda _line: None)
    source = context or build_context(track)
    if not (source / "Dockerfile").is_file():
        raise BuildError(f"no Dockerfile for track {track!r} at {source}; see containers/")
    if wheelhouse is None and source.name in WHEELHOUSE_PACKAGES:
        wheelhouse = host_wheelhouse(source.name, progress=report)
    if wheelhouse is not None and not any(Path(wheelhouse).glob("*.whl")):
        raise BuildError(f"wheelhouse {wheelhouse} holds no .whl files; fill it with `pip download -d`")
    tag = tag or image_name(track)
    client = docker_client(docker_host, timeout=BUILD_TIMEOUT_S)
    args = dict(build_args or {})
    if base:
        args["BASE"] = base
    base_image = args.get("BASE") or _default_base(source / "Dockerfile")
    if base_image and not image_exists(client, base_image) and _is_local_tag(base_image):
        raise BuildError(
            f"base image {base_image} is not present and is not a registry image; make it with "
            "`speedrun containers base` (debootstrap, as root) or pass `--base python:3.11-slim`"
        )
    with _assembled_context(source, wheelhouse) as ctx:
        report(f"building {tag} from {source} (base {base_image or 'as in the Dockerfile'})")
        events = client.api.build(
            path=str(ctx),
            tag=tag,
            buildargs=args,
            rm=True,
            forcerm=True,
            decode=True,
            # A build from a wheelhouse needs no network, and engines started with
            # `--bridge=none` have no default bridge for build steps to join.
            network_mode="none" if wheelhouse is not None else None,
            labels={"speedrun": "1", "speedrun.track": track},
        )
        for event in events:
            if "error" in event:
                raise BuildError(f"building {tag} failed: {str(event['error']).strip()}")
            if text := str(event.get("stream", "")).rstrip():
                for line in text.splitlines():
                    report(line)
    # Classic multi-stage builds leave each earlier stage behind as an untagged image (for
    # the CPU image, a second copy of torch); the Dockerfiles label those stages.
    client.images.prune(filters={"dangling": True, "label": "speedrun.stage"})
    report(f"built {tag}")
    return tag


def record_images(track: str) -> dict[str, Path]:
    """Images that a track's records name, each with its Dockerfile directory.

    The nanogpt records need different PyTorch builds by era, so each record names its image:
    `speedrun-<track>:<name>` is built from `containers/<track>/<name>/`. Empty for a track
    whose records name none (one image per track).
    """
    from harness.manifests.tracks import load_track

    out: dict[str, Path] = {}
    with contextlib.suppress(SpeedrunError):
        for rec in load_track(track).records():
            if rec.image and rec.image not in out:
                out[rec.image] = paths.containers_dir() / track / rec.image.rpartition(":")[2]
    return out


def build_track_images(
    track: str,
    *,
    base: str | None = None,
    wheelhouse: Path | None = None,
    tag: str | None = None,
    progress: Progress | None = None,
    docker_host: str | None = None,
) -> list[str]:
    """Build every image `track` runs in (its records' images, else its one image); return the tags.

    `tag` naming one of the records' images builds just that one; `base` then replaces its base.
    """
    images = record_images(track)
    if tag is not None and tag in images:
        images = {tag: images[tag]}
    elif tag is not None or not images:
        return [
            build_image(track, base=base, wheelhouse=wheelhouse, tag=tag, progress=progress, docker_host=docker_host)
        ]
    if base and len(images) > 1:
        raise BuildError(
            f"--base replaces one image's base; track {track} has {len(images)} images, so pick one with "
            f"--tag ({', '.join(images)})"
        )
    return [
        build_image(
            track,
            base=base,
            wheelhouse=wheelhouse,
            tag=image,
            context=context,
            progress=progress,
            docker_host=docker_host,
        )
        for image, context in images.items()
    ]


def _default_base(dockerfile: Path) -> str | None:
    """The default of the Dockerfile's `ARG BASE=...`, so a build can check it exists first."""
    match = re.search(r"^\s*ARG\s+BASE=(\S+)", dockerfile.read_text(), re.MULTILINE)
    return match.group(1) if match else None


def _is_local_tag(image: str) -> bool:
    """`speedrun-base:bookworm` is a tag made here; a pull for it would only fail confusingly."""
    return image.split(":")[0].startswith("speedrun-")


@contextlib.contextmanager
def _assembled_context(source: Path, wheelhouse: Path | None) -> Iterator[Path]:
    """A temporary build context: the Dockerfile directory plus `wheelhouse/` (empty without one).

    The directory always exists so the Dockerfile's `COPY wheelhouse/` works in both modes.
    Wheels are hard-linked where possible: torch alone is hundreds of MB.
    """
    with tempfile.TemporaryDirectory(prefix="speedrun-build-") as tmp:
        ctx = Path(tmp) / "context"
        shutil.copytree(source, ctx)
        (ctx / "wheelhouse").mkdir(exist_ok=True)
        if wheelhouse is not None:
            for wheel in sorted(Path(wheelhouse).glob("*.whl")):
                _link_or_copy(wheel, ctx / "wheelhouse" / wheel.name)
        yield ctx


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def host_pins(packages: tuple[str, ...]) -> list[str]:
    """`name==version` of this machine's installed `packages`; torch as its CPU build (`+cpu`),
    since the image has no GPU and PyPI's Linux torch pulls gigabytes of CUDA libraries."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in packages:
        try:
            installed = version(name)
        except PackageNotFoundError:
            raise BuildError(f"{name} is not installed here, so its version for the image is unknown") from None
        if name == "torch":
            installed = installed.split("+")[0] + "+cpu"
        pins.append(f"{name}=={installed}")
    return pins


def host_wheelhouse(context: str, *, progress: Progress | None = None) -> Path:
    """The wheelhouse for a Dockerfile directory, in the cache: reused when it holds the pinned
    versions, else filled with `pip download` through this machine's index."""
    pins = host_pins(WHEELHOUSE_PACKAGES[context])
    dest = paths.cache_dir() / "wheelhouse" / context
    have = {wheel.name for wheel in dest.glob("*.whl")}
    if all(any(name.startswith(pin.replace("==", "-") + "-") for name in have) for pin in pins):
        (progress or (lambda _line: None))(f"wheelhouse {dest} holds {', '.join(pins)}")
        return dest
    return download_wheelhouse(dest, pins, progress=progress)


def download_wheelhouse(
    dest: Path, requirements: list[str], *, progress: Progress | None = None, python: str | None = None
) -> Path:
    """`pip download` binary wheels for `requirements` into `dest` (for `build_image(wheelhouse=...)`).

    Runs this machine's pip with its configuration, so a local find-links directory
    (an air-gapped mirror, a CPU torch wheel) is honoured. The wheels are for the image's
    Python (3.11) even where this machine runs another.
    """
    report = progress or (lambda _line: None)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [python or sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(dest)]
    if python is None and f"{sys.version_info.major}.{sys.version_info.minor}" != IMAGE_PYTHON:
        cmd += ["--python-version", IMAGE_PYTHON, "--implementation", "cp"]
    report(f"downloading wheels: {' '.join(requirements)}")
    proc = subprocess.run([*cmd, *requirements], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(
            f"pip download of {' '.join(requirements)} failed ({_first_error(proc.stderr or proc.stdout)}); "
            "make pip reach an index with them (e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu) "
            "or pass --wheelhouse DIR"
        )
    return dest


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _first_error(text: str) -> str:
    """pip's own one-line reason, not its pages of advice."""
    for line in text.splitlines():
        if line.startswith("ERROR:"):
            return line.removeprefix("ERROR:").strip()
    return last_line(text)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
