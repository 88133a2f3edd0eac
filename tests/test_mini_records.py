"""The mini track's record chain and task hints: manifests, hints, and that every record runs."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import paths
from harness.eval.evaluator import MODEL_OUT_ENV, evaluate_model
from harness.manifests.tracks import load_track

RECORDS_DIR = paths.PROJECT_ROOT / "records" / "mini"
TASKS_DIR = paths.PROJECT_ROOT / "tasks" / "mini"
VAL_LINE = re.compile(r"^step:(\d+)/(\d+) val_loss:(\d+\.\d{4}) train_time:(\d+)ms step_avg:(\d+\.\d{2})ms$", re.M)
TRAIN_LINE = re.compile(r"^step:(\d+)/(\d+) train_loss:(\d+\.\d{4}) train_time:(\d+)ms step_avg:(\d+\.\d{2})ms$")


@pytest.fixture(scope="module")
def track():
    return load_track("mini")


def record_dirs() -> list[Path]:
    return sorted(p for p in RECORDS_DIR.iterdir() if p.is_dir())


#: Issue 3 asks for a chain of at least 8 records (baseline + 7 improvements).
MIN_RECORDS = 8


def test_chain_is_long_enough(track):
    assert len(track.records()) >= MIN_RECORDS


def test_chain_records_in_directory_order(track):
    records = track.records()
    assert len(records) >= 2
    assert [r.id for r in records] == [p.name for p in record_dirs()]
    assert [r.index for r in records] == list(range(len(records)))
    for rec in records:
        assert rec.available, f"{rec.id}: train.py missing"
        assert rec.title and len(rec.change) >= 80, f"{rec.id}: title/change too thin"
        assert rec.reference is not None, f"{rec.id}: no measured reference"
    assert "nanoGPT" in str(records[0].settings.get("source", ""))


def test_references_are_medians_of_three_runs_beyond_spread(track):
    records = track.records()
    assert all(r.reference is not None and r.reference.runs >= 3 for r in records)
    for a, b in itertools.pairwise(records):
        assert a.reference and b.reference and a.reference.time_ms_min and b.reference.time_ms_max
        assert b.reference.time_ms_max < a.reference.time_ms_min, (a.id, b.id)


def test_each_record_is_faster_than_its_predecessor(track):
    """The measured chain (benchmarks/mini_chain.py) improves at every record in time to target.

    Not necessarily in steps: a smaller model (record 06) takes more, cheaper steps.
    """
    records = track.records()
    times = [r.reference.time_ms for r in records]
    assert all(b < a for a, b in itertools.pairwise(times)), times


def test_tasks_link_consecutive_records_and_have_all_hints(track):
    records = [r.id for r in track.records()]
    tasks = track.tasks()
    assert [t.id for t in tasks] == [f"mini-{i}" for i in range(len(records) - 1)]
    for task in tasks:
        assert (task.from_record, task.to_record) == (records[task.index], records[task.index + 1])
        assert task.title
        hints = task.hints
        assert hints.levels == ["pseudocode", "text", "paper"], task.id
        assert len(hints.pseudocode.strip().splitlines()) >= 5, task.id
        assert len(hints.text) >= 200, task.id
        assert len(hints.paper) >= 800, task.id


def test_records_follow_the_script_contract():
    """Static checks: environment contract read, no hard-coded data, no harness import."""
    for rec_dir in record_dirs():
        code = (rec_dir / "train.py").read_text()
        for var in (
            "NANOGPT_TRAIN_FILES",
            "NANOGPT_VAL_FILES",
            "NANOGPT_VAL_TOKENS",
            "SPEEDRUN_SEED",
            "SPEEDRUN_TARGET_VAL_LOSS",
        ):
            assert var in code, f"{rec_dir.name}: does not read {var}"
        assert "import harness" not in code and "from harness" not in code, rec_dir.name
        assert ".cache/speedrun" not in code, rec_dir.name


#: Where each record's model export starts; from there to the end, every record is the same.
EXPORT_MARKER = "# The final model, for the harness to score itself"


def test_every_record_passes_the_auditor_against_its_predecessor(track):
    """The human chain is the reference for what the rules allow: no finding at all, whether a
    record is audited alone or, as the oracle's node is, against the record before it."""
    from harness.audit import audit

    findings = {}
    for task in track.tasks():
        before, after = track.record(task.from_record).code(), track.record(task.to_record).code()
        findings[task.id] = [str(f) for f in [*audit(after, baseline=before), *audit(before), *audit(after)]]
    assert len(findings) == len(track.records()) - 1 and not any(findings.values()), findings


def test_records_export_their_model_the_same_way():
    """One export snippet for the whole chain, so a record's diff from its predecessor stays its one idea."""
    tails = {}
    for rec_dir in record_dirs():
        code = (rec_dir / "train.py").read_text()
        assert code.count(EXPORT_MARKER) == 1, rec_dir.name
        tails[rec_dir.name] = code[code.index(EXPORT_MARKER) :]
        assert f'os.environ.get("{MODEL_OUT_ENV}")' in tails[rec_dir.name], rec_dir.name
        # The exported graph is the forward pass without targets: token ids in, logits out.
        assert "def forward(self, idx, targets=None):" in code and "if targets is None:" in code, rec_dir.name
    assert len(set(tails.values())) == 1, "the export differs between records"


def _write_shard(path: Path, tokens: np.ndarray) -> None:
    header = np.zeros(256, dtype=np.int32)
    header[:3] = (20240520, 1, len(tokens))
    with path.open("wb") as f:
        f.write(header.tobytes())
        f.write(tokens.astype(np.uint16).tobytes())


@pytest.fixture(scope="module")
def tiny_shards(tmp_path_factory) -> Path:
    """A small, very repetitive byte corpus: a model learns it to loss < 3 in a few steps."""
    root = tmp_path_factory.mktemp("mini-shards")
    text = b"To be, or not to be, that is the question.\n" * 600
    tokens = np.frombuffer(text, dtype=np.uint8)
    half = len(tokens) // 2
    _write_shard(root / "mini_train_000000.bin", tokens[:half])
    _write_shard(root / "mini_train_000001.bin", tokens[half:])
    _write_shard(root / "mini_val_000000.bin", tokens[: 8192 + 1])
    return root


#: Records whose smoke run also exports its model: between them they use every operator of the chain
#: (00: learned positions, LayerNorm, GELU; 09: rotary, QK-norm, the hashed n-gram tables). The
#: slow test below exports all of them at full scale.
EXPORT_SMOKE = {"00-baseline", "09-trigram-embedding"}
#: The printed loss has 4 decimals; onnxruntime and torch agree to ~1e-6 in float32.
PRINTED_VS_MEASURED = 1e-4


@pytest.mark.parametrize("rec_dir", record_dirs(), ids=lambda p: p.name)
def test_record_trains_to_a_loose_target(rec_dir: Path, tiny_shards: Path, tmp_path: Path):
    # Run a copy that validates every 10 steps (the real cadence is hundreds of steps), so the
    # loose target is seen within seconds; everything else is the record's own code.
    code, n = re.subn(r"val_every: int = \d+", "val_every: int = 10", (rec_dir / "train.py").read_text())
    assert n == 1, f"{rec_dir.name}: expected one `val_every: int = ...` hyperparameter"
    (tmp_path / "train.py").write_text(code)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NANOGPT_", "SPEEDRUN_"))},
        "NANOGPT_TRAIN_FILES": str(tiny_shards / "mini_train_*.bin"),
        "NANOGPT_VAL_FILES": str(tiny_shards / "mini_val_*.bin"),
        "NANOGPT_VAL_TOKENS": "4096",
        "SPEEDRUN_SEED": "0",
        "SPEEDRUN_TARGET_VAL_LOSS": "3.0",
    }
    model = tmp_path / "model.onnx"
    if rec_dir.name in EXPORT_SMOKE:
        env[MODEL_OUT_ENV] = str(model)
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    vals = VAL_LINE.findall(proc.stdout)
    assert vals, proc.stdout[-2000:]
    assert vals[0][0] == "0", "validate at step 0"
    assert float(vals[-1][2]) <= 3.0, "stops at the first validation that reaches the target"
    assert len({n for _, n, *_ in vals}) == 1, "one step budget N"
    for line in proc.stdout.splitlines():
        assert VAL_LINE.match(line) or TRAIN_LINE.match(line) or not line.startswith("step:"), line
    if rec_dir.name not in EXPORT_SMOKE:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"], "no model saved unless asked"
        return
    # The harness's own evaluation of the saved model agrees with the script's last validation.
    measured = evaluate_model(model, env["NANOGPT_VAL_FILES"], 4096, timeout_s=300)
    assert measured.ok, measured.error
    assert (measured.tokens, measured.context) == (4096, 64)
    assert measured.loss is not None and abs(measured.loss - float(vals[-1][2])) <= PRINTED_VS_MEASURED


@pytest.mark.slow
@pytest.mark.timeout(4 * 3600)
@pytest.mark.parametrize("rec_dir", record_dirs(), ids=lambda p: p.name)
def test_record_model_reaches_the_target_as_the_harness_measures_it(rec_dir: Path, mini_data_dir: Path, tmp_path):
    """Each record at its full budget on the real data: the evaluator's loss, not the printed one, is below target.

    About 30 minutes for the chain on one thread (a minute for record 09, six for record 00).
    """
    from harness.data.mini import mini_data_ready

    track = load_track("mini")
    data = mini_data_ready(mini_data_dir)
    assert data is not None
    (tmp_path / "train.py").write_text((rec_dir / "train.py").read_text())
    model = tmp_path / "model.onnx"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("NANOGPT_", "SPEEDRUN_"))},
        "NANOGPT_TRAIN_FILES": data.train_glob,
        "NANOGPT_VAL_FILES": data.val_glob,
        "NANOGPT_VAL_TOKENS": str(track.val_tokens),
        "SPEEDRUN_SEED": "0",
        "SPEEDRUN_TARGET_VAL_LOSS": repr(track.target_val_loss),
        MODEL_OUT_ENV: str(model),
    }
    proc = subprocess.run(
        [sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=3600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = float(VAL_LINE.findall(proc.stdout)[-1][2])
    measured = evaluate_model(model, data.val_glob, track.val_tokens, timeout_s=600)
    assert measured.ok, measured.error
    assert measured.loss is not None and measured.loss <= track.target_val_loss
    assert abs(measured.loss - printed) <= PRINTED_VS_MEASURED
    # The held-out plays score the same model too (they are other plays: their loss is not the target's).
    held_out = evaluate_model(model, data.holdout_glob, track.val_tokens, timeout_s=600)
    assert held_out.ok and held_out.loss is not None
