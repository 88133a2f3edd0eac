"""A toy track for fast tests of the engine: pure-Python "training" scripts whose loss curve
and step time are set by constants, so a run takes a second and its outcome is known."""

from __future__ import annotations

import textwrap
from pathlib import Path

TRAIN = '''\
"""Toy training run: the loss decays by RATE per step; each step takes STEP_S seconds."""
import math
import os
import sys
import time

RATE = {rate}
STEP_S = {step_s}
VAL_S = {val_s}
STEPS = 400
MODE = "{mode}"

train_files = os.environ["NANOGPT_TRAIN_FILES"]
val_files = os.environ["NANOGPT_VAL_FILES"]
val_tokens = int(os.environ["NANOGPT_VAL_TOKENS"])
seed = int(os.environ.get("SPEEDRUN_SEED", "0"))
target = float(os.environ.get("SPEEDRUN_TARGET_VAL_LOSS", "1.0"))

if MODE == "crash":
    raise RuntimeError("deliberate crash")
train_ms = 0.0
for step in range(STEPS + 1):
    loss = 4.0 * math.exp(-RATE * step)
    if step % 5 == 0 or step == STEPS or loss <= target:
        avg = train_ms / max(step, 1)
        print(f"step:{{step}}/{{STEPS}} val_loss:{{loss:.4f}} train_time:{{train_ms:.0f}}ms step_avg:{{avg:.2f}}ms",
              flush=True)
        if VAL_S:
            time.sleep(VAL_S)  # a validation's cost, outside train_time as in a real record
        if loss <= target:
            break
    t0 = time.perf_counter()
    time.sleep(STEP_S)
    if MODE == "hang":
        time.sleep(3600)
    train_ms += 1000 * (time.perf_counter() - t0)
'''


def write_toy_track(
    root: Path,
    *,
    rates: tuple[float, ...] = (0.02, 0.04),
    step_s: float = 0.004,
    target: float = 1.0,
    val_s: tuple[float, ...] | None = None,
) -> Path:
    """Create `tasks/toy` and `records/toy` under `root`: one record per rate, a task per pair.
    `val_s`, per record, is how long each of its validations takes (untimed)."""
    (root / "tasks" / "toy").mkdir(parents=True)
    (root / "tasks" / "toy" / "track.toml").write_text(
        textwrap.dedent(f"""\
        title = "Toy track for tests"
        dataset = "none"
        target_val_loss = {target}
        val_tokens = 1024
        command = ["python", "train.py"]
        time_limit_s = 60
        min_speedup = 0.15
        rules = ["Keep the log format."]
        """)
    )
    for i, rate in enumerate(rates):
        rdir = root / "records" / "toy" / f"{i:02d}-rate{rate}"
        rdir.mkdir(parents=True)
        val = val_s[i] if val_s else 0.0
        (rdir / "train.py").write_text(TRAIN.format(rate=rate, step_s=step_s, mode="ok", val_s=val))
        (rdir / "record.toml").write_text(f'index = {i}\ntitle = "rate {rate}"\nchange = "decay faster"\n')
    ids = sorted(p.name for p in (root / "records" / "toy").iterdir())
    for i in range(len(rates) - 1):
        tdir = root / "tasks" / "toy" / f"toy-{i}"
        (tdir / "hints").mkdir(parents=True)
        (tdir / "task.toml").write_text(
            f'index = {i}\nfrom_record = "{ids[i]}"\nto_record = "{ids[i + 1]}"\ntitle = "faster decay"\n'
        )
        (tdir / "hints" / "pseudocode.txt").write_text("if True:\n    RATE = RATE * 2  # indented\n")
        (tdir / "hints" / "text.md").write_text("Double the decay rate.")
        (tdir / "hints" / "paper.md").write_text("# Faster decay\n\nWe double the rate.")
    return root


def toy_script(rate: float, step_s: float = 0.004, mode: str = "ok", val_s: float = 0.0) -> str:
    return TRAIN.format(rate=rate, step_s=step_s, mode=mode, val_s=val_s)
