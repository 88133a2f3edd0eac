"""Run-slot utilisation of the engine: `--schedule async` versus `--schedule paper`.

A model that answers after a fixed delay and an executor whose every job lasts a fixed time
stand in for the LLM and the GPU, so the figures measure the engine's scheduling alone:

    utilisation = busy slot-seconds / (slots x wall time of the search)

The search's first answer and a budget that ends on a partly filled round cost every
schedule the same; a long search (100 nodes) keeps them from hiding what the schedule does.
A scaffold that must see results before choosing (tree, forest, aide) also idles slots while
its first drafts run. Run by hand (about two minutes with the defaults):

    python benchmarks/scaffold_throughput.py
    python benchmarks/scaffold_throughput.py --slots 8 --think 0.5 --job 1 --scaffolds aide

`--check` exits with status 1 if an async search keeps its slots busy less than 90% of the time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.coder.edits import render_block  # noqa: E402
from harness.execution.base import ExecResult, Executor, LineCallback, RunSpec  # noqa: E402
from harness.manifests.tracks import Task  # noqa: E402
from harness.models.base import CallContext, Completion, Message, Model, Usage  # noqa: E402
from harness.search import get_scaffold  # noqa: E402
from harness.search.engine import Engine, EngineConfig, Schedule  # noqa: E402

START = """\
import os
ATTEMPT = 0
# reads NANOGPT_TRAIN_FILES, NANOGPT_VAL_FILES and NANOGPT_VAL_TOKENS
print("step:10/10 val_loss:0.9 train_time:1000ms step_avg:100.00ms")
"""


class DelayedModel(Model):
    """Thinks for `think_s`, then changes the ATTEMPT line (a real, applicable edit)."""

    provider = "delayed"

    def __init__(self, think_s: float) -> None:
        super().__init__("delayed")
        self.think_s = think_s

    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        time.sleep(self.think_s)
        old = next(line for line in context.current_code.splitlines(keepends=True) if line.startswith("ATTEMPT"))
        text = render_block(context.file_name, old, f"ATTEMPT = {context.node_id}\n")
        return Completion(text=f"Try attempt {context.node_id}.\n\n{text}", usage=Usage(calls=1))


class FixedJobExecutor(Executor):
    """Every run lasts `job_s` and reaches the target; the time it reports varies by attempt so
    that the search has a best node to follow."""

    name = "fixed-job"
    sandboxed = False

    def __init__(self, job_s: float) -> None:
        self.job_s = job_s
        self.busy_s = 0.0
        self.peak = 0
        self._running = 0
        self._lock = threading.Lock()

    def run(self, spec: RunSpec, on_line: LineCallback | None = None) -> ExecResult:
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
        t0 = time.monotonic()
        attempt = int((spec.workspace / "train.py").read_text().split("ATTEMPT = ", 1)[1].split()[0])
        time.sleep(self.job_s)
        ms = 1000 - (attempt * 37) % 500
        spec.log_path.write_text(f"step:10/10 val_loss:0.9000 train_time:{ms}ms step_avg:{ms / 10:.2f}ms\n")
        elapsed = time.monotonic() - t0
        with self._lock:
            self._running -= 1
            self.busy_s += elapsed
        return ExecResult(exit_code=0, wall_s=elapsed, log_path=spec.log_path, executor=self.name, sandboxed=False)


def measure(
    scaffold: str, schedule: Schedule, *, slots: int, nodes: int, think_s: float, job_s: float
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        task = Task(
            id="bench-0",
            track="bench",
            index=0,
            from_record="a",
            to_record="b",
            title="throughput benchmark",
            target_val_loss=1.0,
            root=Path(tmp),
        )
        executor = FixedJobExecutor(job_s)
        engine = Engine(
            EngineConfig(
                task=task,
                main_file="train.py",
                start_files={"train.py": START},
                command=["python", "train.py"],
                run_env={},
                time_limit_s=60,
                target_description="Reach the target sooner.",
                hint_levels=[],
                max_parallel=slots,
                schedule=schedule,
            ),
            model=DelayedModel(think_s),
            scaffold=get_scaffold(scaffold, {"nodes": nodes}),
            executor=executor,
            run_dir=Path(tmp) / "run",
        )
        t0 = time.monotonic()
        status = engine.run()
        wall = time.monotonic() - t0
        assert status == "finished" and len(engine.journal.nodes) == nodes
    return {
        "wall_s": wall,
        "busy_s": executor.busy_s,
        "utilisation": executor.busy_s / (slots * wall),
        "peak": executor.peak,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slots", type=int, default=4, help="run slots (--max-parallel)")
    ap.add_argument("--nodes", type=int, default=100, help="node budget of each search")
    ap.add_argument("--think", type=float, default=0.05, help="seconds the model takes per answer")
    ap.add_argument("--job", type=float, default=0.25, help="seconds each run takes")
    ap.add_argument("--scaffolds", default="flat,tree,forest,aide,multi-aide", help="comma-separated presets")
    ap.add_argument("--check", action="store_true", help="exit 1 if an async search is below 90%% utilisation")
    args = ap.parse_args()
    print(
        f"{args.slots} slots, {args.nodes} nodes per search, model {args.think:g} s per answer, "
        f"job {args.job:g} s per run\n"
    )
    print(f"{'scaffold':<12} {'schedule':<9} {'wall s':>7} {'busy slot-s':>12} {'utilisation':>12} {'peak':>5}")
    low = []
    for scaffold in args.scaffolds.split(","):
        for schedule in ("async", "paper"):
            r = measure(scaffold, schedule, slots=args.slots, nodes=args.nodes, think_s=args.think, job_s=args.job)
            print(
                f"{scaffold:<12} {schedule:<9} {r['wall_s']:>7.1f} {r['busy_s']:>12.1f} "
                f"{r['utilisation']:>11.1%} {r['peak']:>5.0f}",
                flush=True,
            )
            if schedule == "async" and r["utilisation"] < 0.9:
                low.append(scaffold)
    if low:
        print(f"\nasync below 90%: {', '.join(low)}")
    return 1 if args.check and low else 0


if __name__ == "__main__":
    sys.exit(main())
