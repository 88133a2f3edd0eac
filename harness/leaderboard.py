"""The leaderboard: one row per (model, scaffold, hints, task, seed), from a results root, and
the aggregates over it: per task first (seeds averaged), then over tasks (mean, bootstrap CI, IQM)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from harness.costs import run_cost
from harness.eval.log import RunInfo, read_run
from harness.scoring import benchmark_score
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
    "reference_source",
    "nodes",
    "valid_nodes",
    "cost_usd",
    "tokens",
    "run_id",
]
#: How far each score can be trusted: its interval, how it was protected, whether a person should look.
TRUST_COLUMNS = ["fsr_low", "fsr_high", "pairs", "protection", "review"]
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
    "reference_source",
    "valid_nodes",
    "nodes",
    "cost_usd",
]
TRUST_DISPLAY_COLUMNS = ["protection", "review"]

#: An FSR above this is flagged for a person to look at, never capped: recovering 1.5x the
#: human record's speed-up is possible, and more often a measurement or an exploit.
REVIEW_FSR = 1.5
#: What protected a score whose run.json does not say: the candidate script's own log.
SELF_REPORTED = "self-reported"

AGENT = ["model", "scaffold", "hints"]
#: How seeds of one agent on one task become the task's score. `mean` is this benchmark's;
#: the others are labelled options for comparison with published numbers:
#: `best-of-n` keeps the best seed; `paper-top3` is the llm-speedrunner analysis notebooks'
#: (the mean of the three best seeds, fewer padded with the lowest of them, FSRs outside [0, 3] as 0).
Selection = Literal["mean", "best-of-n", "paper-top3"]
#: Statuses whose runs are over: finished ones score their FSR, failed ones 0.
_OVER = ("finished", "failed")


def fmt_cell(value: object) -> str:
    """One table cell: '-' for missing, three decimals for small floats, none for large."""
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
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
                "reference_source": s.reference.source if s else None,
                "nodes": s.nodes if s else None,
                "valid_nodes": s.valid_nodes if s else None,
                "cost_usd": round(info.usage.cost_usd, 4),
                "tokens": info.usage.total_tokens,
                "run_id": info.run_id,
                **trust_fields(info),
                **cost_and_similarity_columns(path.parent, info),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS + TRUST_COLUMNS + EXTRA_COLUMNS)


def trust_fields(info: RunInfo) -> dict[str, Any]:
    """A row's interval, protection and review flag; run.json files from before they existed
    read as self-reported scores with no interval."""
    s = info.score
    est = s.estimate if s else None
    return {
        "fsr_low": est.low if est else None,
        "fsr_high": est.high if est else None,
        "pairs": est.pairs if est else None,
        "protection": ", ".join(s.protection) if s is not None and s.protection else SELF_REPORTED,
        "review": bool(s is not None and s.fsr > REVIEW_FSR),
    }


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
    sim = node_similarity(run_dir, task_records(info, run_dir), best) if best is not None else None
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


# ---- aggregates ----------------------------------------------------------------------------------------


def run_scores(df: pd.DataFrame) -> pd.Series:
    """Each run's score for aggregation: a finished run its FSR, a failed run 0 (no valid
    candidate, the paper's rule, whatever stopped it), a run still going or stopped early
    (budget, interrupt: it resumes) NaN, counted apart as unfinished."""
    fsr = pd.to_numeric(df["fsr"], errors="coerce")
    return fsr.where(df["status"] == "finished", 0.0).fillna(0.0).where(df["status"].isin(_OVER))


def _select(values: pd.Series, selection: Selection) -> float:
    if selection == "best-of-n":
        return float(values.max())
    if selection == "paper-top3":
        top = sorted((v if 0 <= v <= 3 else 0.0 for v in values), reverse=True)[:3]
        top += [top[-1]] * (3 - len(top))
        return sum(top) / 3
    return float(values.mean())


def _sources(values: pd.Series) -> str:
    """Where a group's reference times came from: one source, `mixed`, or `-` (none yet)."""
    got = sorted({str(v) for v in values.dropna()} - {"-"})
    return got[0] if len(got) == 1 else ("mixed" if got else "-")


def per_task(df: pd.DataFrame, by: Sequence[str] = AGENT, selection: Selection = "mean") -> pd.DataFrame:
    """One row per (group, task): the task's score for that group, over its finished and failed runs.

    Seeds are combined first, per agent (model, scaffold, hints) and task, by `selection`;
    a group coarser than the agent (`by=["model"]`) then averages its agents' task scores, so
    an agent with more seeds does not weigh more. Columns: the group, `task`, `fsr`,
    `fsr_min`/`fsr_max` over the runs, `runs`, `failed`, `unfinished`, `reference_source`."""
    by = list(by)
    cols = [*by, "task", "fsr", "fsr_min", "fsr_max", "runs", "failed", "unfinished", "reference_source"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    d = df.assign(score=run_scores(df), failed=df["status"] == "failed")
    cells = []
    for key, g in d.groupby([*AGENT, "task"], sort=True):
        over = g["score"].dropna()
        cells.append(
            dict(zip([*AGENT, "task"], key, strict=True))
            | {
                "fsr": _select(over, selection) if len(over) else float("nan"),
                "fsr_min": over.min() if len(over) else float("nan"),
                "fsr_max": over.max() if len(over) else float("nan"),
                "runs": len(over),
                "failed": int(g["failed"].sum()),
                "unfinished": len(g) - len(over),
                "reference_source": _sources(g["reference_source"]),
            }
        )
    c = pd.DataFrame(cells)
    out = c.groupby([*by, "task"], sort=True).agg(
        fsr=("fsr", "mean"),
        fsr_min=("fsr_min", "min"),
        fsr_max=("fsr_max", "max"),
        runs=("runs", "sum"),
        failed=("failed", "sum"),
        unfinished=("unfinished", "sum"),
        reference_source=("reference_source", _sources),
    )
    return out.reset_index()[cols]


def aggregate(df: pd.DataFrame, by: Sequence[str] = AGENT, selection: Selection = "mean") -> pd.DataFrame:
    """One row per group: the benchmark score over the tasks it has a score on.

    `mean_fsr` is the mean of the per-task scores (`per_task`), `ci_low`/`ci_high` a bootstrap
    95% CI over tasks, `iqm` their interquartile mean; `tasks` counts tasks with a score,
    `runs` the finished and failed runs, `failed` those of them scored 0, `unfinished` runs
    left out, `review` rows with FSR above `REVIEW_FSR`, `selection` how seeds were combined."""
    by = list(by)
    cols = [*by, "tasks", "runs", "failed", "unfinished", "mean_fsr", "ci_low", "ci_high", "iqm"]
    cols += ["reference_source", "review", "cost_usd", "selection"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    runs = dict(iter(df.groupby(by, sort=True)))
    rows = []
    for key, t in per_task(df, by, selection).groupby(by, sort=True):
        scored = t["fsr"].dropna()
        score = benchmark_score(list(scored)) if len(scored) else None
        g = runs[key]
        rows.append(
            dict(zip(by, key, strict=True))
            | {
                "tasks": len(scored),
                "runs": int(t["runs"].sum()),
                "failed": int(t["failed"].sum()),
                "unfinished": int(t["unfinished"].sum()),
                "mean_fsr": score.mean if score else None,
                "ci_low": score.ci_low if score else None,
                "ci_high": score.ci_high if score else None,
                "iqm": score.iqm if score else None,
                "reference_source": _sources(t["reference_source"]),
                "review": int(g["review"].astype(bool).sum()),
                "cost_usd": float(g["cost_usd"].sum()),
                "selection": selection,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def summary(df: pd.DataFrame, selection: Selection = "mean") -> pd.DataFrame:
    """The benchmark score per agent (model, scaffold, hints): see `aggregate`."""
    return aggregate(df, AGENT, selection)


def breakdowns(df: pd.DataFrame, selection: Selection = "mean") -> dict[str, pd.DataFrame]:
    """The benchmark score by model, by scaffold and by hint level, each averaging the agents
    that share that value task by task."""
    return {col: aggregate(df, [col], selection) for col in AGENT}
