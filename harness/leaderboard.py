"""The leaderboard: one row per (model, scaffold, hints, task, seed), from a results root."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.costs import run_cost
from harness.eval.evaluate import RunInfo, read_run
from harness.scoring import mean_ci
from harness.similarity import node_similarity, task_records

COLUMNS = [
    "model",
    "scaffold",
    "hints",
    "task",
    "seed",
    "status",
    "fsr",
    "best_time_ms",
    "t_ref_ms",
    "t_next_ms",
    "reference",
    "nodes",
    "valid_nodes",
    "cost_usd",
    "tokens",
    "run_id",
]
LEADERBOARD_CSV = "leaderboard.csv"
#: What a person reads first: the agent, the task, the score and what it cost.
DISPLAY_COLUMNS = [
    "model",
    "scaffold",
    "hints",
    "task",
    "seed",
    "status",
    "fsr",
    "best_time_ms",
    "t_ref_ms",
    "t_next_ms",
    "reference",
    "valid_nodes",
    "nodes",
    "cost_usd",
]


def fmt_cell(value: object) -> str:
    """One table cell: '-' for missing, three decimals for small floats, none for large."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def collect(results_dir: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(results_dir.glob("*/run.json")):
        try:
            info = read_run(path.parent)
        except ValueError:
            continue  # a run.json from an incompatible version is skipped, not fatal
        if info is None:
            continue
        s = info.score
        rows.append(
            {
                "model": info.config.model,
                "scaffold": info.config.scaffold,
                "hints": info.config.hints,
                "task": info.config.task,
                "seed": info.config.seed,
                "status": info.status,
                "fsr": s.fsr if s else None,
                "best_time_ms": s.best_time_ms if s else None,
                "t_ref_ms": s.reference.t_ref_ms if s else None,
                "t_next_ms": s.reference.t_next_ms if s else None,
                "reference": s.reference.source if s else None,
                "nodes": s.nodes if s else None,
                "valid_nodes": s.valid_nodes if s else None,
                "cost_usd": round(info.usage.cost_usd, 4),
                "tokens": info.usage.total_tokens,
                "run_id": info.run_id,
                **cost_and_similarity_columns(path.parent, info),
            }
        )
    return pd.DataFrame(rows, columns=[*COLUMNS, *EXTRA_COLUMNS])


# ---- columns beside the score: spend (harness.costs) and closeness to the human change -------------

#: After the score's columns: tokens, dollars and compute per run, FSR per unit of each, and
#: how much of record i+1's change the best node made (harness.similarity).
EXTRA_COLUMNS = [
    "input_tokens",
    "output_tokens",
    "search_hours",
    "confirm_hours",
    "gpu_hours",
    "cpu_hours",
    "fsr_per_usd",
    "fsr_per_gpu_hour",
    "fsr_per_cpu_hour",
    "similarity",
    "similarity_hunks",
]


def cost_and_similarity_columns(run_dir: Path, info: RunInfo) -> dict[str, object]:
    cost = run_cost(run_dir, info)
    best = info.score.best_node if info.score else None
    sim = node_similarity(run_dir, task_records(info), best) if best is not None else None
    return {
        **cost.model_dump(include=set(EXTRA_COLUMNS)),
        "similarity": sim.lines if sim else None,
        "similarity_hunks": sim.hunks if sim else None,
    }


def write_leaderboard(results_dir: Path) -> tuple[pd.DataFrame, Path]:
    df = collect(results_dir)
    path = results_dir / LEADERBOARD_CSV
    results_dir.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return df, path


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean FSR over tasks (and seeds) per agent, with a 95% confidence interval."""
    done = df[df["fsr"].notna()]
    rows = []
    for (model, scaffold, hints), group in done.groupby(["model", "scaffold", "hints"], sort=True):
        mean, lo, hi = mean_ci(list(group["fsr"].astype(float)))
        rows.append(
            {
                "model": model,
                "scaffold": scaffold,
                "hints": hints,
                "tasks": group["task"].nunique(),
                "runs": len(group),
                "mean_fsr": mean,
                "ci_low": lo,
                "ci_high": hi,
                "cost_usd": float(group["cost_usd"].sum()),
            }
        )
    return pd.DataFrame(rows)
