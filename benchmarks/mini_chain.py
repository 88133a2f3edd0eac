"""Re-measure the mini track's record chain on this machine and print the table.

Each record's `train.py` runs as the harness would run it (its own directory, the
`NANOGPT_*` / `SPEEDRUN_*` environment of the contract), `--runs` times. Runs are
interleaved (A B C ... A B C ...) rather than back to back, so slow drifts of a shared
machine spread over all records instead of penalising whichever ran during them.
Training is deterministic for a fixed seed, so the steps and the loss at the target are
the same in every run; only the clock varies.

    python benchmarks/mini_chain.py                   # every record, 3 runs each
    python benchmarks/mini_chain.py --runs 5 --records 00-baseline,01-lr-schedule
    python benchmarks/mini_chain.py --update          # also write records/mini/*/record.toml [reference]
    python benchmarks/mini_chain.py --runs-file runs.jsonl   # keep every run; a rerun resumes
    python benchmarks/mini_chain.py --from-calibration       # table from `speedrun calibrate`'s runs

`--from-calibration` measures nothing: it reads the runs that `speedrun calibrate --track
mini --runs K` made on this machine (the same interleaved measurement, kept in the
calibration cache that evaluations score against), so the published table and the
references an evaluation uses are one set of runs. Give calibration files as arguments to
merge runs made on this machine in separate invocations.

Not part of the default test suite: a full pass takes tens of minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.data.mini import prepare_mini  # noqa: E402
from harness.eval.calibration import Calibration, RecordTiming, calibration_path, code_sha256  # noqa: E402
from harness.manifests.tracks import Record, Track, load_track  # noqa: E402

VAL_LINE = re.compile(r"^step:(\d+)/(\d+) val_loss:([0-9.]+) train_time:(\d+)ms")


@dataclass
class Result:
    record: Record
    times_ms: list[float] = field(default_factory=list)
    by_round: dict[int, float] = field(default_factory=dict)  # round -> time, to pair with neighbours
    steps: int | None = None
    val_loss: float | None = None
    failures: int = 0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms) if self.times_ms else float("nan")


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {platform.machine()} ({cpu}), torch {torch.__version__}"


def run_once(record: Record, env: dict[str, str], target: float, timeout_s: float) -> tuple[float, int, float] | None:
    """One training run; (train_time_ms, steps, val_loss) at the first validation <= target."""
    proc = subprocess.run(
        [sys.executable, record.script],
        cwd=record.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    for line in proc.stdout.splitlines():
        m = VAL_LINE.match(line)
        if m and float(m.group(3)) <= target:
            return float(m.group(4)), int(m.group(1)), float(m.group(3))
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-5:])
    print(f"  {record.id}: did not reach {target} (exit {proc.returncode}):\n{tail}", file=sys.stderr)
    return None


def fmt_s(ms: float) -> str:
    return f"{ms / 1000:.1f}"


def paired_ratios(prev: Result, cur: Result) -> list[float]:
    """cur/prev time within each round: runs taken minutes apart share the machine's drift."""
    return [cur.by_round[k] / prev.by_round[k] for k in sorted(cur.by_round) if k in prev.by_round]


def table(results: list[Result]) -> str:
    base = results[0].median_ms if results else float("nan")
    rows = [
        "| record | change | steps | val loss | median time (s) | min–max (s) | vs previous, paired (min–max) "
        "| speedup vs 00 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for i, r in enumerate(results):
        if not r.times_ms:
            rows.append(f"| {r.record.id} | {r.record.title} | – | – | failed | – | – | – |")
            continue
        ratios = paired_ratios(results[i - 1], r) if i else []
        paired = f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f})" if ratios else "–"
        rows.append(
            f"| {r.record.id} | {r.record.title} | {r.steps} | {r.val_loss:.4f} | {fmt_s(r.median_ms)} | "
            f"{fmt_s(min(r.times_ms))}–{fmt_s(max(r.times_ms))} | {paired} | {base / r.median_ms:.2f}x |"
        )
    return "\n".join(rows)


def reference_block(r: Result, machine: str, today: str) -> str:
    return (
        "[reference]\n"
        f"time_ms = {r.median_ms:.0f}\n"
        f"steps = {r.steps}\n"
        f"val_loss = {r.val_loss:.4f}\n"
        f"runs = {len(r.times_ms)}\n"
        f"time_ms_min = {min(r.times_ms):.0f}\n"
        f"time_ms_max = {max(r.times_ms):.0f}\n"
        f'machine = "{machine}"\n'
        f'source = "benchmarks/mini_chain.py, {today}"\n'
    )


README = ROOT / "records" / "mini" / "README.md"
TABLE_START, TABLE_END = "<!-- mini_chain table start -->", "<!-- mini_chain table end -->"


def update_readme(text: str) -> None:
    """Replace the measured table between the markers in records/mini/README.md."""
    readme = README.read_text()
    head, rest = readme.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    README.write_text(f"{head}{TABLE_START}\n{text}\n{TABLE_END}{tail}")


def update_manifest(r: Result, machine: str, today: str) -> None:
    path = r.record.root / "record.toml"
    text = path.read_text()
    head = text.split("[reference]", 1)[0].rstrip() + "\n\n"
    path.write_text(head + reference_block(r, machine, today))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per record (default 3)")
    parser.add_argument("--records", default="", help="comma-separated record ids (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="SPEEDRUN_SEED for every run")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="OMP_NUM_THREADS for the runs (default: torch's choice). On a machine shared with other "
        "jobs, 1 thread is far steadier: two OpenMP threads stall each other whenever one core is busy",
    )
    parser.add_argument(
        "--update", action="store_true", help="write the measurements into each record.toml and the README table"
    )
    parser.add_argument("--json", action="store_true", help="also print the raw run times as JSON")
    parser.add_argument(
        "--runs-file",
        type=Path,
        help="append every finished run to this JSONL file, and skip the runs it already holds "
        "(a long measurement interrupted on a shared machine resumes where it stopped)",
    )
    parser.add_argument(
        "--from-calibration",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="build the table from `speedrun calibrate` runs instead of measuring (default file: this "
        "machine's local-executor calibration for the current OMP_NUM_THREADS)",
    )
    args = parser.parse_args()

    track = load_track("mini")
    records = track.records()
    if args.records:
        wanted = args.records.split(",")
        records = [r for r in records if r.id in wanted]
        missing = set(wanted) - {r.id for r in records}
        if missing:
            parser.error(f"unknown records: {', '.join(sorted(missing))}")

    if args.from_calibration is not None:
        files = args.from_calibration or [calibration_path(track, "local", track.target_val_loss)]
        return report(from_calibrations(records, files, args.runs), args, track)

    data = prepare_mini(progress=lambda msg: print(msg, file=sys.stderr))
    env = {
        **os.environ,
        "NANOGPT_TRAIN_FILES": data.train_glob,
        "NANOGPT_VAL_FILES": data.val_glob,
        "NANOGPT_VAL_TOKENS": str(track.val_tokens),
        "SPEEDRUN_SEED": str(args.seed),
        "SPEEDRUN_TARGET_VAL_LOSS": str(track.target_val_loss),
        "PYTHONUNBUFFERED": "1",
    }
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    machine = machine_description() + (f", {args.threads} thread(s)" if args.threads else "")
    print(f"machine: {machine}; target val loss {track.target_val_loss} on {track.val_tokens} tokens", file=sys.stderr)

    results = [Result(r) for r in records]
    done: set[tuple[str, int]] = set()
    if args.runs_file and args.runs_file.exists():
        by_id = {r.record.id: r for r in results}
        for line in args.runs_file.read_text().splitlines():
            row = json.loads(line)
            if row["record"] in by_id and row["round"] < args.runs and row["seed"] == args.seed:
                res = by_id[row["record"]]
                res.times_ms.append(row["time_ms"])
                res.by_round[row["round"]] = row["time_ms"]
                res.steps, res.val_loss = row["steps"], row["val_loss"]
                done.add((row["record"], row["round"]))
        print(f"resuming: {len(done)} runs already in {args.runs_file}", file=sys.stderr)
    for round_ in range(args.runs):
        for res in results:
            if (res.record.id, round_) in done:
                continue
            t0 = time.perf_counter()
            out = run_once(res.record, env, track.target_val_loss, args.timeout)
            wall = time.perf_counter() - t0
            if out is None:
                res.failures += 1
                continue
            ms, steps, loss = out
            res.times_ms.append(ms)
            res.by_round[round_] = ms
            res.steps, res.val_loss = steps, loss
            if args.runs_file:
                row = {
                    "record": res.record.id,
                    "round": round_,
                    "seed": args.seed,
                    "time_ms": ms,
                    "steps": steps,
                    "val_loss": loss,
                    "machine": machine,
                }
                with args.runs_file.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            print(
                f"round {round_ + 1}/{args.runs} {res.record.id}: {fmt_s(ms)}s to target "
                f"at step {steps} (val {loss:.4f}; wall {wall:.0f}s)",
                file=sys.stderr,
                flush=True,
            )

    return report(results, args, track, machine)


def from_calibrations(records: list[Record], files: list[Path], runs: int) -> list[Result]:
    """Results from calibration files; a record whose code changed since it was measured is left out."""
    timings: dict[str, RecordTiming] = {}
    for path in files:
        if not path.is_file():
            raise SystemExit(f"no calibration at {path}: run `speedrun calibrate --track mini --runs {runs}` first")
        cal = Calibration.model_validate_json(path.read_text())
        timings.update({rid: t for rid, t in cal.records.items() if t.times_ms})
    results = []
    for rec in records:
        res = Result(rec)
        timing = timings.get(rec.id)
        if timing is None or timing.code_sha256 != code_sha256(rec):
            print(f"{rec.id}: no calibration runs of its current code", file=sys.stderr)
            res.failures += 1
        else:
            res.times_ms = timing.times_ms[:runs]
            res.by_round = dict(enumerate(res.times_ms))
            res.steps, res.val_loss = timing.steps[-1], timing.val_loss[-1]
        results.append(res)
    return results


def report(results: list[Result], args: argparse.Namespace, track: Track, machine: str = "") -> int:
    if not machine:
        threads = os.environ.get("OMP_NUM_THREADS")
        machine = machine_description() + (f", {threads} thread(s)" if threads else "")
    today = date.today().isoformat()
    how = "from `speedrun calibrate`" if args.from_calibration is not None else "interleaved"
    counts = sorted({len(r.times_ms) for r in results})
    runs = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} (see each record's range)"
    summary = (
        f"Machine: {machine}. Target val loss {track.target_val_loss} on {track.val_tokens} tokens, "
        f"seed {args.seed}, {runs} runs per record ({how}), {today}.\n\n{table(results)}"
    )
    print(summary)
    if args.json:
        print(json.dumps({r.record.id: {"median_ms": r.median_ms, "times_ms": r.times_ms} for r in results}, indent=2))
    if args.update:
        for res in results:
            if res.times_ms:
                update_manifest(res, machine, today)
        if not args.records:
            update_readme(summary)
    return 1 if any(r.failures for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
