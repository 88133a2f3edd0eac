"""What a run spent, and what it scored at equal spend: scaffolds and models compared fairly.

Money and tokens come from run.json's usage (every LLM call of the run, the scaffold's own
included). Compute comes from the nodes' results: each candidate run's wall time as the
harness's executor measured it (`RunResult.wall_time_s`), plus the confirmation runs'
train times from confirm.json (their wall time is not recorded, so that part is a lower
bound). Calibration runs are shared by every evaluation on a machine and are not counted.
A GPU-hour is an hour of one GPU: a run of a GPU track's command uses `--gpus` of them. A
CPU track's CPU-hours are the CPU time the executor measured for each run (`cpu_s`, every
thread counted), or its wall time where that was not measured, plus the confirmation's.

"FSR at equal budget" asks: had the search stopped after its first N nodes (or its first
B dollars of model calls, node by node in the order they were started), how good was its
best node? A node's FSR there is from its own search run, not from the side-by-side
confirmation only the final best node gets, so the last point of the curve can differ from
the run's confirmed FSR.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from harness.errors import ManifestError, SpeedrunError
from harness.eval.log import RunInfo
from harness.eval.setup import NPROC_PLACEHOLDER, gpu_count
from harness.manifests.tracks import load_track
from harness.rundir import read_confirmation, read_journal, read_run_info, run_dirs
from harness.scoring import fsr
from harness.search.journal import Node

NODE_LEVELS = (1, 2, 5, 10, 20)
DOLLAR_LEVELS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


class RunCost(BaseModel):
    """A run's spend: tokens and dollars (LLM calls), hours of compute (candidate runs)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    search_hours: float = 0.0
    confirm_hours: float = 0.0
    gpus_per_run: int | None = None
    gpu_hours: float | None = None
    cpu_hours: float | None = None
    fsr_per_usd: float | None = None
    fsr_per_gpu_hour: float | None = None
    fsr_per_cpu_hour: float | None = None


def _gpus_per_run(info: RunInfo) -> int | None:
    """GPUs one training run of this track uses; None for a CPU track (or an unknown one)."""
    try:
        track = load_track(info.track)
    except ManifestError:
        return None
    if any(NPROC_PLACEHOLDER in part for part in track.command):
        try:
            return gpu_count(info.config.gpus)
        except SpeedrunError:
            return None
    return None


def _per(value: float | None, amount: float | None) -> float | None:
    return value / amount if value is not None and amount else None


def run_cost(run_dir: Path, info: RunInfo) -> RunCost:
    nodes = read_journal(run_dir).all()
    search_s = sum(n.result.wall_time_s for n in nodes if n.result is not None)
    # CPU time where the executor measured it (a run of several threads counts each), else wall time.
    search_cpu_s = sum(
        n.result.cpu_s if n.result.cpu_s is not None else n.result.wall_time_s for n in nodes if n.result is not None
    )
    conf = read_confirmation(run_dir)
    confirm_ms = 0.0
    if conf is not None:
        confirm_ms = sum(t for t in [*conf.candidate_ms, *conf.reference_ms, *conf.next_ms] if t != float("inf"))
    hours = search_s / 3600 + confirm_ms / 3.6e6
    gpus = _gpus_per_run(info)
    gpu_hours = hours * gpus if gpus else None
    cpu_hours = None if gpus else search_cpu_s / 3600 + confirm_ms / 3.6e6
    score = info.score.fsr if info.score else None
    return RunCost(
        input_tokens=info.usage.input_tokens,
        output_tokens=info.usage.output_tokens,
        cost_usd=round(info.usage.cost_usd, 6),
        unpriced_calls=info.usage.unpriced_calls,
        search_hours=search_s / 3600,
        confirm_hours=confirm_ms / 3.6e6,
        gpus_per_run=gpus,
        gpu_hours=gpu_hours,
        cpu_hours=cpu_hours,
        fsr_per_usd=_per(score, info.usage.cost_usd),
        fsr_per_gpu_hour=_per(score, gpu_hours),
        fsr_per_cpu_hour=_per(score, cpu_hours),
    )


def node_fsr(node: Node, info: RunInfo) -> float:
    """A node's FSR from its own search run (0 unless valid and record i+1 is faster than i)."""
    score = info.score
    if score is None or node.time_ms is None or score.reference.t_next_ms >= score.reference.t_ref_ms:
        return 0.0
    try:
        margin = load_track(info.track).min_speedup
    except ManifestError:
        margin = 0.0
    ref = score.reference
    return fsr(ref.t_ref_ms, ref.t_next_ms, node.time_ms, margin)


def budget_curve(nodes: Sequence[Node], info: RunInfo) -> pd.DataFrame:
    """Per node in start order: nodes so far, dollars so far, and the best FSR so far."""
    rows, best, spent = [], 0.0, 0.0
    for k, node in enumerate(sorted(nodes, key=lambda n: n.id), start=1):
        spent += node.usage.cost_usd
        best = max(best, node_fsr(node, info))
        rows.append({"nodes": k, "cost_usd": spent, "best_fsr": best})
    return pd.DataFrame(rows, columns=["nodes", "cost_usd", "best_fsr"])


def _at(curve: pd.DataFrame, column: str, level: float) -> float:
    within = curve[curve[column] <= level + 1e-12]
    return float(within["best_fsr"].max()) if not within.empty else 0.0


def equal_budget(
    results_dir: Path,
    nodes: Sequence[int] = NODE_LEVELS,
    dollars: Sequence[float] | None = None,
    *,
    dense: bool = False,
) -> pd.DataFrame:
    """Mean over an agent's finished runs of the best search FSR within each budget.

    Rows: model, scaffold, hints, budget (`nodes` or `usd`), level, runs, mean_fsr. Dollar
    levels default to the ladder up to the first that covers the costliest run; levels past
    a run's own spend give that run's final best (it stopped within the budget). `dense`
    takes every node count and every dollar amount at which some run's best could change
    (for a chart)."""
    curves = []
    for run_dir in run_dirs(results_dir):
        info = read_run_info(run_dir)
        if info is None or info.status != "finished" or info.score is None:
            continue
        curve = budget_curve(read_journal(run_dir).all(), info)
        if not curve.empty:
            curves.append((info, curve))
    cols = ["model", "scaffold", "hints", "budget", "level", "runs", "mean_fsr"]
    if not curves:
        return pd.DataFrame(columns=cols)
    if dense:
        nodes = range(1, 1 + max(len(c) for _, c in curves))
        dollars = sorted({float(x) for _, c in curves for x in c["cost_usd"]})
    if dollars is None:
        top = max(float(c["cost_usd"].iloc[-1]) for _, c in curves)
        ladder = [d for d in DOLLAR_LEVELS if d < top]
        dollars = [*ladder, next((d for d in DOLLAR_LEVELS if d >= top), top)] if top > 0 else []
    rows = []
    for info, curve in curves:
        agent = {"model": info.config.model, "scaffold": info.config.scaffold, "hints": info.config.hints}
        rows += [{**agent, "budget": "nodes", "level": float(n), "fsr": _at(curve, "nodes", n)} for n in nodes]
        rows += [{**agent, "budget": "usd", "level": float(d), "fsr": _at(curve, "cost_usd", d)} for d in dollars]
    df = pd.DataFrame(rows)
    out = (
        df.groupby(["model", "scaffold", "hints", "budget", "level"], sort=True)["fsr"]
        .agg(runs="count", mean_fsr="mean")
        .reset_index()
    )
    return out[cols]


def budget_chart_png(table: pd.DataFrame) -> bytes | None:
    """Mean FSR against nodes and against dollars, one line per agent."""
    if table.empty:
        return None
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, budget, label in ((axes[0], "nodes", "nodes (first N started)"), (axes[1], "usd", "dollars of LLM calls")):
        part = table[table["budget"] == budget]
        for (model, scaffold, hints), group in part.groupby(["model", "scaffold", "hints"], sort=True):
            ax.step(
                group["level"], group["mean_fsr"], where="post", marker="o", label=f"{model} · {scaffold} · {hints}"
            )
        if budget == "usd" and not part.empty and (part["level"] > 0).all():
            ax.set_xscale("log")
        ax.set_ylim(bottom=min(0.0, float(part["mean_fsr"].min()) if not part.empty else 0.0))
        ax.set_xlabel(label)
        ax.set_ylabel("mean best FSR (search runs)")
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    axes[0].legend(fontsize="x-small")
    fig.suptitle("FSR at equal budget")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
