"""A track's set-up for one run: the process count from `--gpus`, the command, its
environment and the executor (with the record's image), shared by the search, the
calibration and the confirmation runs."""

from __future__ import annotations

import sys
from typing import Any

from harness.data.shards import TrackData
from harness.data.tracks import run_env
from harness.errors import ConfigError
from harness.eval.model_check import ModelCheck
from harness.execution import get_executor
from harness.execution.base import Executor
from harness.execution.gpus import DEFAULT_GPUS, GpuSpec
from harness.manifests.tracks import Track

NPROC_PLACEHOLDER = "{nproc_per_node}"


def gpu_count(gpus: str | None) -> int:
    """`--gpus` as a process count: unset or `all` -> 8, `N` -> N, `0,1,2,3` (or `device=...`) -> 4."""
    if (gpus or "").strip() == "none":
        raise ConfigError("--gpus none leaves no GPU for the track's command; use all, a count or device ids")
    spec = GpuSpec.parse(gpus)
    return spec.processes() if spec else DEFAULT_GPUS


def track_command(track: Track, gpus: str | None, *, local: bool) -> list[str]:
    """The track's command with `{nproc_per_node}` filled in from `--gpus`."""
    command = list(track.command)
    if any(NPROC_PLACEHOLDER in part for part in command):
        n = str(gpu_count(gpus))
        command = [part.replace(NPROC_PLACEHOLDER, n) for part in command]
    return python_command(command, local=local)


def track_executor(
    track: Track, name: str, options: dict[str, Any], *, image: str | None = None, gpus: str | None = None
) -> Executor:
    """The executor `name` for runs of `track`; a docker run uses `image` (a record's own) or the track's.

    Precedence: explicit options (`--executor-arg`), then `--gpus`, then the track's defaults.
    """
    args: dict[str, Any] = dict(track.executors.get(name, {}))
    if name == "docker":
        args["image"] = image or track.image
        if gpus:
            args["gpus"] = gpus
    args.update(options)
    return get_executor(name, **args)


def track_env(track: Track, data: TrackData, gpus: str | None, *, local: bool, **kw: Any) -> dict[str, str]:
    """`run_env`, plus CUDA_VISIBLE_DEVICES on the local executor when `--gpus` names device ids
    (a container sees only the requested devices; a local process would otherwise see all)."""
    env = run_env(track, data, **kw)
    spec = GpuSpec.parse(gpus)
    if local and spec is not None and (devices := spec.visible_devices()):
        env["CUDA_VISIBLE_DEVICES"] = devices
    return env


def python_command(command: list[str], local: bool) -> list[str]:
    """On the local executor, `python` means the harness's own interpreter (it has torch)."""
    if local and command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)


def track_model_check(track: Track, data: TrackData) -> ModelCheck | None:
    """What the harness evaluates a run's saved model on, for tracks whose records save one."""
    if track.model_file is None:
        return None
    return ModelCheck(
        model_file=track.model_file, val_glob=data.val_glob, val_tokens=track.val_tokens, holdout_glob=data.holdout_glob
    )
