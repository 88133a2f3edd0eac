"""Tracks, records and tasks: read from the manifests under `tasks/` and `records/`.

A track is `tasks/<track>/track.toml`; each record is `records/<track>/<id>/record.toml`
(the record's id is its directory name, and sorting ids gives the chain order); each task
is `tasks/<track>/<id>/task.toml` with its hints beside it in `hints/<level>.<ext>`.
Tracks whose code and hints the project may not ship (`source = "fetched"`) keep the same
layout under the user's cache (`speedrun records fetch` writes it).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import paths
from harness.errors import ManifestError
from harness.manifests.integrity import verify_fetched

M = TypeVar("M", bound=BaseModel)

HINT_LEVELS: tuple[str, ...] = ("pseudocode", "text", "paper")


class _Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferenceTime(_Manifest):
    """A record's measured facts on some machine (or the paper's re-measurement)."""

    time_ms: float = Field(gt=0)
    steps: int | None = None
    val_loss: float | None = None
    runs: int = 1
    time_ms_min: float | None = None
    time_ms_max: float | None = None
    machine: str = ""
    source: str = ""


class Record(_Manifest):
    """One record of a track's chain: the training script and its facts."""

    id: str
    track: str
    index: int = Field(ge=0)
    title: str
    change: str = ""
    script: str = "train.py"
    date: str | None = None
    upstream: str | None = None
    official_time_ms: float | None = None
    reference: ReferenceTime | None = None
    settings: dict[str, str | int | float | bool] = Field(default_factory=dict)
    image: str | None = None
    root: Path = Field(exclude=True)

    @property
    def script_path(self) -> Path:
        return self.root / self.script

    @property
    def available(self) -> bool:
        return self.script_path.is_file()

    def code(self) -> str:
        verify_fetched(self.script_path)  # no-op for shipped code; fetched code must match its checksum
        if not self.available:
            raise ManifestError(
                f"record {self.id}: {self.script_path} is missing; "
                f"run `speedrun records fetch --track {self.track}` first"
            )
        return self.script_path.read_text()


class Hints(_Manifest):
    """A task's hints, verbatim. A level that is absent is None."""

    pseudocode: str | None = None
    text: str | None = None
    paper: str | None = None

    @property
    def levels(self) -> list[str]:
        return [level for level in HINT_LEVELS if getattr(self, level)]


class Task(_Manifest):
    """A transition record i -> i+1: the agent gets record i's code and hints about i+1."""

    id: str
    track: str
    index: int
    from_record: str
    to_record: str
    title: str
    target_val_loss: float
    rules: list[str] = Field(default_factory=list)
    hints: Hints = Field(default_factory=Hints)
    root: Path = Field(exclude=True)


class Track(_Manifest):
    """A benchmark track: its contract with the training scripts and its defaults."""

    name: str
    title: str
    description: str = ""
    source: Literal["shipped", "fetched"] = "shipped"
    #: Which preparer makes the data: `mini`, `fineweb`, or `none` for scripts that make their own.
    dataset: Literal["mini", "fineweb", "none"] = "mini"
    target_val_loss: float
    val_tokens: int = Field(gt=0)
    script: str = "train.py"
    command: list[str] = Field(min_length=1)
    time_limit_s: float = Field(gt=0)
    reference_times: Literal["calibrate", "paper"] = "calibrate"
    #: A candidate must be at least this fraction faster than record i to count as beating it:
    #: smaller differences are within the track's timing noise (a null edit must score 0).
    min_speedup: float = Field(0.0, ge=0.0, lt=1.0)
    rules: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    #: CPU tracks: threads per run (OMP_NUM_THREADS) unless the user's environment says otherwise.
    #: One thread per run is what a 2-core machine can time: two runs at once never share a core.
    threads: int | None = Field(None, ge=1)
    #: Tracks whose records save their trained model (SPEEDRUN_MODEL_OUT): the file's name in the
    #: workspace. The harness then evaluates that model itself, and its loss decides the target.
    model_file: str | None = None
    image: str | None = None
    #: Default options per executor (`[executors.docker]`: gpus, memory, shm_size, ...); flags override them.
    executors: dict[str, dict[str, str | int | float | bool]] = Field(default_factory=dict)
    root: Path = Field(exclude=True)

    def manifest_root(self, kind: Literal["tasks", "records"]) -> Path:
        """Where this track's record and task directories live."""
        if self.source == "fetched":
            return paths.cache_dir() / kind / self.name
        base = paths.tasks_dir() if kind == "tasks" else paths.records_dir()
        return base / self.name

    def _facts(self) -> dict[str, Path]:
        """Record manifests (`record.toml`) always ship with the project, even for fetched tracks."""
        root = paths.records_dir() / self.name
        return {p.parent.name: p for p in sorted(root.glob("*/record.toml"))}

    def records(self) -> list[Record]:
        code_root = self.manifest_root("records")
        out = [
            _load(Record, path, id=rid, track=self.name, root=code_root / rid) for rid, path in self._facts().items()
        ]
        return sorted(out, key=lambda r: r.index)

    def record(self, record_id: str) -> Record:
        for rec in self.records():
            if rec.id == record_id:
                return rec
        raise ManifestError(f"unknown record {record_id!r} in track {self.name!r}; see `speedrun tasks list`")

    def tasks(self) -> list[Task]:
        root = paths.tasks_dir() / self.name
        hint_root = self.manifest_root("tasks")
        out = []
        for path in sorted(root.glob("*/task.toml")):
            tid = path.parent.name
            data = _read_toml(path)
            data.setdefault("target_val_loss", self.target_val_loss)
            extra_rules = data.get("rules", [])
            data["rules"] = [*self.rules, *(extra_rules if isinstance(extra_rules, list) else [extra_rules])]
            if self.source == "fetched":
                verify_fetched(hint_root / tid / "hints")
            data["hints"] = _read_hints(hint_root / tid / "hints")
            out.append(_validate(Task, data, path, id=tid, track=self.name, root=path.parent))
        return sorted(out, key=lambda t: t.index)


def _read_toml(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML ({exc}); fix the file") from None


def _validate(model: type[M], data: dict[str, object], path: Path, **extra: object) -> M:
    try:
        return model.model_validate({**data, **extra})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ManifestError(f"{path}: field '{field}': {err['msg']}; fix the manifest") from None


def _load(model: type[M], path: Path, **extra: object) -> M:
    return _validate(model, _read_toml(path), path, **extra)


def _read_hints(hint_dir: Path) -> Hints:
    found: dict[str, str] = {}
    for level in HINT_LEVELS:
        files = sorted(hint_dir.glob(f"{level}.*"))
        if files:
            found[level] = files[0].read_text()
    return Hints(**found)


def track_names() -> list[str]:
    return sorted(p.parent.name for p in paths.tasks_dir().glob("*/track.toml"))


def load_track(name: str) -> Track:
    path = paths.tasks_dir() / name / "track.toml"
    if not path.is_file():
        known = ", ".join(track_names()) or "none"
        raise ManifestError(f"unknown track {name!r}; known tracks: {known}")
    return _load(Track, path, name=name, root=path.parent)


def all_tasks(track: str | None = None) -> list[Task]:
    names = [track] if track else track_names()
    return [task for name in names for task in load_track(name).tasks()]


def get_task(task_id: str) -> Task:
    """Find a task by id (`mini-0`, `nanogpt-12`)."""
    for name in track_names():
        if task_id.startswith(f"{name}-"):
            for task in load_track(name).tasks():
                if task.id == task_id:
                    return task
    ids = ", ".join(t.id for t in all_tasks()[:6])
    raise ManifestError(f"unknown task {task_id!r}; run `speedrun tasks list` (e.g. {ids}, ...)")
