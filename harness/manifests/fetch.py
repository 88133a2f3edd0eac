"""Import the code and hints that the project may not ship, and check them on every use.

The NanoGPT track's record scripts and the paper's hints come from
facebookresearch/llm-speedrunner, whose licence is non-commercial: the project ships
only facts (`records/nanogpt/*/record.toml`, `tasks/nanogpt/*/task.toml`) and the user
imports the rest into their cache with `speedrun records fetch`:

    <cache>/records/nanogpt/<record-id>/train_gpt2.py, results.json
    <cache>/tasks/nanogpt/<task-id>/hints/pseudocode.txt, text.txt, paper.txt
    <cache>/records/nanogpt/fetched.json      source, commit and sha256 of every file above

The clone is read at one pinned commit, so every user benchmarks the same scripts and
hints; `verify_fetched` re-checks a file's sha256 whenever the registry reads it, so a
script edited in place cannot silently become the reference.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from harness import paths
from harness.events import Event, EventSink, ignore
from harness.manifests.integrity import MANIFEST, FetchError, FetchManifest, manifest_path

if TYPE_CHECKING:
    from harness.manifests.tracks import Record

#: The commit of llm-speedrunner whose scripts and hints the paper's results describe.
PINNED_COMMIT = "bfde801f7cef707e85a2d8b64b5ee89d9d5f20b5"
DEFAULT_SOURCE = "https://github.com/facebookresearch/llm-speedrunner"

#: Where llm-speedrunner keeps each record's starting script and the hints of the task it starts.
SCRIPTS = "workspace_templates/nanogpt_speedrun/record_{n}"
HINTS = "data/nanogpt_speedrun_knowledge_in_levels/record_{n}"
#: Files of a record directory, imported under the same names.
RECORD_FILES = ("train_gpt2.py", "results.json")
#: Hint level -> the file that holds it in llm-speedrunner (`level_0_diff.txt` is the answer, not a hint).
HINT_FILES = {
    "pseudocode": "level_1_pseudo.txt",
    "text": "level_2_description.txt",
    "paper": "level_3_paper.txt",
}


class FetchReport(BaseModel):
    track: str
    source: str
    commit: str
    records: list[str]
    tasks: list[str]
    files: int
    manifest: Path
    #: Facts in the shipped record manifests that disagree with the fetched results.json.
    warnings: list[str] = Field(default_factory=list)


# ---- import -------------------------------------------------------------------------------------


def fetch_records(
    source: str | None = None,
    *,
    commit: str = PINNED_COMMIT,
    track: str = "nanogpt",
    progress: EventSink = ignore,
) -> FetchReport:
    """Clone `source` (default: llm-speedrunner on GitHub), read it at `commit`, import into the cache.

    Nothing in the cache changes unless every file was read: the import is staged in a
    temporary directory inside the cache (one filesystem) and moved into place by renames.
    """
    from harness.manifests.tracks import load_track

    tr = load_track(track)
    if tr.source != "fetched":
        raise FetchError(f"track {track!r} ships its own code; there is nothing to fetch")
    records = tr.records()
    # Not `tr.tasks()`: it verifies the hints already in the cache, and a fetch must be able to
    # repair a cache that fails verification.
    tasks = _task_stubs(track)
    index_of = {r.id: r.index for r in records}
    src = source or DEFAULT_SOURCE
    cache = paths.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as tmp:
        work = Path(tmp)
        repo = work / "repo"
        progress(Event("phase", f"cloning {src}"))
        _clone(src, repo)
        sha = _resolve(repo, commit, src)
        progress(Event("phase", f"reading {sha[:12]}"))
        wanted: list[tuple[str, str]] = []  # (path in llm-speedrunner, path relative to the cache)
        for rec in records:
            for name in RECORD_FILES:
                wanted.append((f"{SCRIPTS.format(n=rec.index)}/{name}", f"records/{track}/{rec.id}/{name}"))
        for task_id, from_record in tasks:
            if from_record not in index_of:
                raise FetchError(f"task {task_id} starts from unknown record {from_record!r}")
            n = index_of[from_record]
            for level, name in HINT_FILES.items():
                wanted.append((f"{HINTS.format(n=n)}/{name}", f"tasks/{track}/{task_id}/hints/{level}.txt"))
        stage = work / "stage"
        hashes: dict[str, str] = {}
        blobs = _blobs(repo, sha, [origin for origin, _ in wanted], src)
        for done, ((_, rel), data) in enumerate(zip(wanted, blobs, strict=True), 1):
            dest = stage / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            hashes[rel] = hashlib.sha256(data).hexdigest()
            progress(Event("info", rel, data={"done": done, "total": len(wanted)}))
        warnings = _compare_results(stage, track, records)
        manifest = FetchManifest(track=track, source=src, commit=sha, files=hashes)
        (stage / "records" / track / MANIFEST).write_text(manifest.model_dump_json(indent=2))
        # Hints first, records (holding the manifest) last: an import cut short between the two
        # leaves a manifest that no longer matches the hints, which verification reports.
        for kind in ("tasks", "records"):
            _swap(stage / kind / track, cache / kind / track, work / f"old-{kind}")
    progress(Event("phase", f"imported {len(hashes)} files from {sha[:12]}"))
    return FetchReport(
        track=track,
        source=src,
        commit=sha,
        records=[r.id for r in records],
        tasks=[t for t, _ in tasks],
        files=len(hashes),
        manifest=manifest_path(track),
        warnings=warnings,
    )


def _task_stubs(track: str) -> list[tuple[str, str]]:
    """(task id, from record) from the shipped task manifests, without reading any hints."""
    out = []
    for path in sorted((paths.tasks_dir() / track).glob("*/task.toml")):
        try:
            from_record = tomllib.loads(path.read_text())["from_record"]
        except (tomllib.TOMLDecodeError, KeyError):
            raise FetchError(f"{path}: no readable from_record; fix the manifest") from None
        out.append((path.parent.name, str(from_record)))
    return out


def _compare_results(stage: Path, track: str, records: list[Record]) -> list[str]:
    """The paper's results.json against the reference facts the project ships."""
    out = []
    for rec in records:
        rid, ref = rec.id, rec.reference
        path = stage / "records" / track / rid / "results.json"
        try:
            metrics = json.loads(path.read_text())["metrics"]
            fetched = (float(metrics["train_time"]), int(metrics["n_steps"]), float(metrics["val_loss"]))
        except (ValueError, KeyError, TypeError):
            out.append(f"record {rid}: results.json has no readable metrics")
            continue
        if ref is None:
            continue
        shipped = (float(ref.time_ms), ref.steps, ref.val_loss)
        if shipped != fetched:
            out.append(f"record {rid}: results.json says {fetched}, record.toml says {shipped}")
    return out


def _swap(new: Path, dest: Path, backup: Path) -> None:
    """Put `new` at `dest` by renames (same filesystem), keeping the old tree until it is in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    had_old = dest.exists()
    if had_old:
        os.replace(dest, backup)
    try:
        os.replace(new, dest)
    except BaseException:
        if had_old:
            os.replace(backup, dest)
        raise
    if had_old:
        shutil.rmtree(backup, ignore_errors=True)


# ---- git ----------------------------------------------------------------------------------------


def _clone_arg(source: str) -> str:
    """A local directory is cloned by path; anything else is handed to git as a URL."""
    path = Path(source).expanduser()
    return str(path.resolve()) if path.exists() else source


def _git(args: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("git") is None:
        raise FetchError("git is not installed; install it (e.g. `apt-get install git`) and run the fetch again")
    env = {
        **os.environ,
        # Never wait for a password prompt, and never download LFS objects (none are needed).
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_LFS_SKIP_SMUDGE": "1",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True)


def _clone(source: str, dest: Path) -> None:
    # --no-checkout: only blobs at the pinned commit are read, so the work tree (and the
    # multi-GB conda-pack tarball that llm-speedrunner keeps in LFS) is never materialised.
    proc = _git(["clone", "--quiet", "--no-checkout", _clone_arg(source), str(dest)])
    if proc.returncode != 0:
        raise FetchError(f"cloning {source} failed: {_last_line(proc.stderr)}")


def _resolve(repo: Path, commit: str, source: str) -> str:
    proc = _git(["rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"], cwd=repo)
    if proc.returncode != 0:
        hint = (
            "update the mirror (`git fetch`) or pass --commit to use another commit"
            if commit == PINNED_COMMIT
            else "check the --commit value"
        )
        raise FetchError(f"commit {commit} is not in {source}; {hint}")
    return proc.stdout.decode().strip()


def _blobs(repo: Path, sha: str, files: list[str], source: str) -> list[bytes]:
    """The contents of `files` at `sha`, read by one `git cat-file --batch` rather than a process each."""
    request = "".join(f"{sha}:{path}\n" for path in files).encode()
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", "cat-file", "--batch"], cwd=repo, env=env, input=request, capture_output=True)
    if proc.returncode != 0:
        raise FetchError(f"reading {source} at {sha[:12]} failed: {_last_line(proc.stderr)}")
    out, pos = [], 0
    for path in files:
        end = proc.stdout.index(b"\n", pos)
        header = proc.stdout[pos:end].split()
        if len(header) != 3 or header[1] != b"blob":
            raise FetchError(f"{path} is missing from {source} at commit {sha[:12]}; is it a clone of llm-speedrunner?")
        size = int(header[2])
        out.append(proc.stdout[end + 1 : end + 1 + size])
        pos = end + 1 + size + 1  # the content is followed by a newline
    return out


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "git gave no reason"
