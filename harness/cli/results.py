"""`speedrun leaderboard`, `speedrun report` and `speedrun parse-log`: reading what runs left."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from harness.cli._common import console, fail
from harness.cli.render import safe_text
from harness.errors import SpeedrunError

# ---- parse-log ------------------------------------------------------------------------------------


def parse_log_cmd(
    file: Path,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Read a training log the way the scorer does."""
    from harness.logparse import parse_log_file

    if not file.is_file():
        fail(SpeedrunError(f"{file}: no such file"))
    parsed = parse_log_file(file)
    out = {
        "format": parsed.format,
        "val_loss": parsed.val_loss,
        "train_time_ms": parsed.train_time_ms,
        "step": parsed.step,
        "total_steps": parsed.total_steps,
        "finished": parsed.finished,
        "train_loss": parsed.train_loss,
        "step_avg_ms": parsed.step_avg_ms,
        "diverged": parsed.diverged,
        "val_points": len(parsed.val_history),
        "notes": parsed.notes,
    }
    if as_json:
        print(json.dumps(out, indent=2))
        return
    table = Table(show_header=False, title=str(file))
    for key, value in out.items():
        table.add_row(key, safe_text("-" if value is None else str(value), limit=2000))
    console.print(table)


# ---- leaderboard -------------------------------------------------------------------------------------


def leaderboard_cmd(
    results_dir: Annotated[Path, typer.Option(help="Results root.")] = Path("results"),
) -> None:
    """Tabulate every evaluation under a results root and write leaderboard.csv."""
    from harness.leaderboard import (
        DISPLAY_COLUMNS,
        TRUST_DISPLAY_COLUMNS,
        breakdowns,
        fmt_cell,
        summary,
        write_leaderboard,
    )

    df, path = write_leaderboard(results_dir)
    if df.empty:
        console.print(f"no evaluations under {results_dir}")
        return
    table = Table(title=f"leaderboard ({len(df)} runs)")
    cols = DISPLAY_COLUMNS + TRUST_DISPLAY_COLUMNS
    for col in cols:
        table.add_column(col)
    for record in df.to_dict("records"):
        table.add_row(*[fmt_cell(record[c]) for c in cols])
    console.print(table)
    console.print(_score_table(summary(df), ["model", "scaffold", "hints"], "per agent"))
    for col, part in breakdowns(df).items():
        if df[col].nunique() > 1:
            console.print(_score_table(part, [col], f"by {col}"))
    console.print(f"[dim]wrote {path}[/dim]")


def _score_table(summ: Any, keys: list[str], title: str) -> Table:
    """Benchmark scores: per task first (seeds averaged, failed runs 0), then over tasks. The
    failed, unfinished and review counts get a column only where one is not 0 (80 columns)."""
    from harness.leaderboard import fmt_cell

    counts = [c for c in ("failed", "unfinished", "review") if summ[c].fillna(0).astype(int).any()]
    st = Table(title=f"mean FSR over tasks {title}: seeds averaged per task, bootstrap 95% CI, IQM")
    for col in [*keys, "tasks", "runs", *counts, "mean FSR", "95% CI", "IQM", "cost_usd"]:
        st.add_column(col)
    for r in summ.to_dict("records"):
        ci = "-" if r["ci_low"] is None or r["ci_low"] != r["ci_low"] else f"{r['ci_low']:.3f} – {r['ci_high']:.3f}"
        st.add_row(
            *[str(r[k]) for k in keys],
            str(r["tasks"]),
            str(r["runs"]),
            *[str(r[c]) for c in counts],
            fmt_cell(r["mean_fsr"]),
            ci,
            fmt_cell(r["iqm"]),
            f"{r['cost_usd']:.2f}",
        )
    return st


def report_cmd(
    results_dir: Annotated[Path, typer.Option(help="Results root.")] = Path("results"),
) -> None:
    """Write report.md and report.html (with an FSR chart) for a results root."""
    from harness.report import write_report

    if not results_dir.is_dir():
        fail(SpeedrunError(f"{results_dir}: no such results directory"))
    md, page = write_report(results_dir)
    console.print(f"wrote {md} and {page}")
