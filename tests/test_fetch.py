"""`speedrun records fetch`: a local git repository with llm-speedrunner's layout stands in for
GitHub, so cloning, pinning, checksums and the error paths run without the network."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli.app import app
from harness.fsutil import sha256_file
from harness.manifests import fetch
from harness.manifests.fetch import fetch_records
from harness.manifests.integrity import FetchError, manifest_path, read_manifest, require_fetched, verify_fetched
from harness.manifests.tracks import get_task, load_track

REPO = Path(__file__).resolve().parents[1]

STANDIN = '''"""Stand-in for record {n} of the NanoGPT speedrun (tests only)."""
import os

train_files, val_files = os.environ["NANOGPT_TRAIN_FILES"], os.environ["NANOGPT_VAL_FILES"]
if os.environ.get("RANK", "0") == "0":
    assert os.environ["NANOGPT_VAL_TOKENS"] == "10485760"
    print("step:{steps}/{steps} val_loss:3.2700 train_time:{ms}ms step_avg:1.00ms", flush=True)
'''


def standin_time_ms(n: int) -> int:
    """The train_time a stand-in record prints: later records are faster, like the real chain,
    and all under the half second that starting Python takes, so that no stand-in claims more
    time than the harness's clock saw it run."""
    return 500 - 20 * n


def _references() -> dict[int, dict[str, float]]:
    out = {}
    for path in (REPO / "records" / "nanogpt").glob("*/record.toml"):
        data = tomllib.loads(path.read_text())
        out[int(data["index"])] = data["reference"]
    return out


def _git(repo: Path, *args: str) -> str:
    cmd = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    proc = subprocess.run([*cmd, *args], cwd=repo, capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def make_speedrunner_repo(root: Path, *, skip: str | None = None) -> tuple[Path, str]:
    """A git repository shaped like facebookresearch/llm-speedrunner; returns it and its commit.

    `skip` names a file (path inside the repository) to leave out.
    """
    root.mkdir(parents=True)
    refs = _references()
    files: dict[str, str] = {"README.md": "stand-in for llm-speedrunner\n"}
    for n in range(1, 22):
        base = f"workspace_templates/nanogpt_speedrun/record_{n}"
        files[f"{base}/train_gpt2.py"] = STANDIN.format(n=n, steps=100 + n, ms=standin_time_ms(n))
        ref = refs[n]
        metrics = {"n_steps": ref["steps"], "val_loss": ref["val_loss"], "train_time": int(ref["time_ms"])}
        files[f"{base}/results.json"] = json.dumps({"job_status": "COMPLETED", "metrics": metrics})
    for n in range(1, 21):
        base = f"data/nanogpt_speedrun_knowledge_in_levels/record_{n}"
        files[f"{base}/level_0_diff.txt"] = f"diff of record {n} -> {n + 1}\n"
        files[f"{base}/level_1_pseudo.txt"] = f"pseudocode {n} -> {n + 1}\n    indented line\n"
        files[f"{base}/level_2_description.txt"] = f"description {n} -> {n + 1}\n"
        files[f"{base}/level_3_paper.txt"] = f"# Paper {n} -> {n + 1}\n\nbody\n"
    for rel, text in files.items():
        if rel == skip:
            continue
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "stand-in")
    return root, _git(root, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def speedrunner(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return make_speedrunner_repo(tmp_path_factory.mktemp("upstream") / "llm-speedrunner")


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_fetch_imports_every_script_and_hint_with_checksums(
    speedrunner: tuple[Path, str], isolated_cache: Path
) -> None:
    repo, sha = speedrunner
    events: list[str] = []
    report = fetch_records(str(repo), commit=sha, progress=lambda ev: events.append(ev.message))
    assert report.commit == sha
    assert len(report.records) == 21 and len(report.tasks) == 19
    assert report.files == 21 * 2 + 19 * 3
    assert report.warnings == []  # the stand-in results.json agree with the shipped record.toml
    assert events and events[-1].startswith("imported 99 files")

    manifest = read_manifest("nanogpt")
    assert manifest is not None and manifest.commit == sha and manifest.source == str(repo)
    for rel, digest in manifest.files.items():
        assert sha256_file(isolated_cache / rel) == digest
    script = isolated_cache / "records/nanogpt/12-flex-attention/train_gpt2.py"
    assert "record 12 of" in script.read_text()
    # The hints of record_N describe N -> N+1: they belong to task nanogpt-N.
    hints = isolated_cache / "tasks/nanogpt/nanogpt-12/hints"
    assert sorted(p.name for p in hints.iterdir()) == ["paper.txt", "pseudocode.txt", "text.txt"]
    assert (hints / "pseudocode.txt").read_text() == "pseudocode 12 -> 13\n    indented line\n"
    # 6 -> 7 (the PyTorch upgrade) is not a task, and the raw diff is never a hint.
    assert not (isolated_cache / "tasks/nanogpt/nanogpt-6").exists()
    assert not any("diff" in rel for rel in manifest.files)
    assert not list(isolated_cache.glob(".fetch-*")), "the staging directory is removed"

    task = get_task("nanogpt-12")
    assert task.hints.levels == ["pseudocode", "text", "paper"]
    assert "record 13 of" in load_track("nanogpt").record(task.to_record).code()


def test_the_pinned_commit_is_required_unless_overridden(speedrunner: tuple[Path, str], isolated_cache: Path) -> None:
    repo, _ = speedrunner
    with pytest.raises(FetchError) as err:
        fetch_records(str(repo))
    message = str(err.value)
    assert fetch.PINNED_COMMIT in message and "--commit" in message and "\n" not in message
    assert not (isolated_cache / "records").exists(), "a failed fetch leaves the cache alone"


def test_commit_selects_the_files_of_that_commit(tmp_path: Path, isolated_cache: Path) -> None:
    repo, first = make_speedrunner_repo(tmp_path / "upstream")
    script = repo / "workspace_templates/nanogpt_speedrun/record_3/train_gpt2.py"
    script.write_text(script.read_text() + "# changed upstream later\n")
    _git(repo, "commit", "-q", "-am", "later change")
    fetch_records(str(repo), commit=first)
    fetched = isolated_cache / "records/nanogpt/03-muon/train_gpt2.py"
    assert "changed upstream later" not in fetched.read_text()
    second = _git(repo, "rev-parse", "HEAD")
    report = fetch_records(str(repo), commit=second[:10])  # abbreviations resolve to the full sha
    assert report.commit == second
    assert "changed upstream later" in fetched.read_text()
    with pytest.raises(FetchError, match="check the --commit value"):
        fetch_records(str(repo), commit="0" * 40)


def test_a_modified_script_or_hint_is_an_error_naming_it(speedrunner: tuple[Path, str], isolated_cache: Path) -> None:
    repo, sha = speedrunner
    fetch_records(str(repo), commit=sha)
    record = load_track("nanogpt").record("05-modern-arch")
    record.script_path.write_text(record.script_path.read_text() + "\nprint('sneaky')\n")
    with pytest.raises(FetchError) as err:
        record.code()
    assert str(record.script_path) in str(err.value) and "modified" in str(err.value)

    hint = isolated_cache / "tasks/nanogpt/nanogpt-9/hints/text.txt"
    hint.write_text("a different hint\n")
    with pytest.raises(FetchError, match=f"{hint}.*modified"):
        get_task("nanogpt-9")

    # Fetching again restores both.
    fetch_records(str(repo), commit=sha)
    assert "sneaky" not in record.code()
    assert get_task("nanogpt-9").hints.text == "description 9 -> 10\n"


def test_a_missing_or_foreign_file_is_an_error_naming_it(speedrunner: tuple[Path, str], isolated_cache: Path) -> None:
    repo, sha = speedrunner
    fetch_records(str(repo), commit=sha)
    hint = isolated_cache / "tasks/nanogpt/nanogpt-3/hints/paper.txt"
    hint.unlink()
    with pytest.raises(FetchError, match=f"fetched file {hint} is missing"):
        get_task("nanogpt-3")
    fetch_records(str(repo), commit=sha)

    script = isolated_cache / "records/nanogpt/21-batch-size/train_gpt2.py"
    script.unlink()
    with pytest.raises(FetchError, match=f"fetched file {script} is missing"):
        load_track("nanogpt").record("21-batch-size").code()
    fetch_records(str(repo), commit=sha)

    extra = isolated_cache / "tasks/nanogpt/nanogpt-4/hints/pseudocode.md"
    extra.write_text("my own hint")
    with pytest.raises(FetchError, match=f"{extra} is not from `speedrun records fetch`"):
        get_task("nanogpt-4")


def test_a_cache_without_manifest_is_not_trusted(speedrunner: tuple[Path, str], isolated_cache: Path) -> None:
    repo, sha = speedrunner
    fetch_records(str(repo), commit=sha)
    manifest_path("nanogpt").unlink()
    with pytest.raises(FetchError, match=r"no fetched\.json"):
        load_track("nanogpt").record("01-llmc-baseline").code()
    with pytest.raises(FetchError, match="records fetch"):
        require_fetched("nanogpt")


def test_nothing_fetched_yet(isolated_cache: Path) -> None:
    with pytest.raises(FetchError, match="run `speedrun records fetch --track nanogpt` first"):
        require_fetched("nanogpt")
    record = load_track("nanogpt").record("02-tuned-lr-rotary")
    assert not record.available
    with pytest.raises(Exception, match="records fetch"):
        record.code()
    assert get_task("nanogpt-2").hints.levels == []  # listing works before a fetch
    verify_fetched(REPO / "records" / "mini")  # shipped code is never checked against a manifest


def test_a_source_missing_a_file_changes_nothing(tmp_path: Path, isolated_cache: Path) -> None:
    good, good_sha = make_speedrunner_repo(tmp_path / "good")
    fetch_records(str(good), commit=good_sha)
    before = _tree(isolated_cache)
    missing = "data/nanogpt_speedrun_knowledge_in_levels/record_14/level_2_description.txt"
    bad, bad_sha = make_speedrunner_repo(tmp_path / "bad", skip=missing)
    with pytest.raises(FetchError, match=f"{missing} is missing from"):
        fetch_records(str(bad), commit=bad_sha)
    assert _tree(isolated_cache) == before
    assert not list(isolated_cache.glob(".fetch-*"))


def test_an_interrupted_swap_restores_the_old_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest, new, backup = tmp_path / "dest", tmp_path / "new", tmp_path / "old"
    dest.mkdir()
    (dest / "a.txt").write_text("old")
    new.mkdir()
    (new / "a.txt").write_text("new")
    real = os.replace
    calls = []

    def flaky(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(fetch.os, "replace", flaky)
    with pytest.raises(OSError):
        fetch._swap(new, dest, backup)
    assert (dest / "a.txt").read_text() == "old"


def test_results_json_disagreeing_with_the_manifest_is_reported(tmp_path: Path, isolated_cache: Path) -> None:
    repo, _ = make_speedrunner_repo(tmp_path / "upstream")
    results = repo / "workspace_templates/nanogpt_speedrun/record_7/results.json"
    data = json.loads(results.read_text())
    data["metrics"]["train_time"] = 1
    results.write_text(json.dumps(data))
    _git(repo, "commit", "-q", "-am", "other times")
    report = fetch_records(str(repo), commit=_git(repo, "rev-parse", "HEAD"))
    assert len(report.warnings) == 1 and report.warnings[0].startswith("record 07-pytorch-25")


def test_missing_git_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch.shutil, "which", lambda _name: None)
    with pytest.raises(FetchError, match="git is not installed"):
        fetch_records("/nonexistent", commit="abc")


def test_cli_fetch(speedrunner: tuple[Path, str], isolated_cache: Path) -> None:
    repo, sha = speedrunner
    runner = CliRunner()
    result = runner.invoke(app, ["records", "fetch", "--source", str(repo), "--commit", sha])
    assert result.exit_code == 0, result.output
    assert "fetched 21 records and the hints of 19 tasks" in " ".join(result.output.split())
    assert "is not the pinned" in result.output  # the stand-in commit is not the paper's
    result = runner.invoke(app, ["records", "fetch", "--source", str(isolated_cache / "nope")])
    assert result.exit_code == 2
    assert "error:" in result.output and "Traceback" not in result.output
