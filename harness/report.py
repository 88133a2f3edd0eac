"""A shareable report of a results root: Markdown and a self-contained HTML page with a chart."""

from __future__ import annotations

import base64
import html
import io
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from harness.costs import budget_chart_png, equal_budget
from harness.leaderboard import DISPLAY_COLUMNS, TRUST_DISPLAY_COLUMNS, collect, fmt_cell, summary

SUMMARY_TITLE = "Mean FSR per agent (per task first, seeds averaged; bootstrap 95% CI over tasks; IQM)"


def _markdown_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_none_\n"
    cols = list(df.columns)
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        out.append("| " + " | ".join(fmt_cell(v) for v in row) + " |")
    return "\n".join(out) + "\n"


def _chart_png(df: pd.DataFrame) -> bytes | None:
    """FSR per task, one bar group per agent (model · scaffold · hints)."""
    done = df[df["fsr"].notna()]
    if done.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    done = done.assign(agent=done["model"] + " · " + done["scaffold"] + " · " + done["hints"])
    table = done.pivot_table(index="task", columns="agent", values="fsr", aggfunc="mean")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(table) + 3), 4))
    table.plot.bar(ax=ax)
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_ylabel("FSR (mean over seeds)")
    ax.set_title("Fraction of Speedup Recovered per task")
    ax.legend(fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def _equal_budget_section(results_dir: Path) -> tuple[str, str]:
    """The "FSR at equal budget" view (harness.costs) as Markdown (with `budget.png`) and as HTML."""
    table = equal_budget(results_dir)
    if table.empty:
        return "", ""
    labels = [
        f"≤ {level:g} node{'' if level == 1 else 's'}" if kind == "nodes" else f"≤ ${level:g}"
        for kind, level in zip(table["budget"], table["level"], strict=True)
    ]
    order = list(dict.fromkeys(labels))  # nodes first, then dollars, each ascending
    table = table.assign(column=pd.Categorical(labels, categories=order, ordered=True))
    wide = table.pivot_table(index=["model", "scaffold", "hints"], columns="column", values="mean_fsr", observed=True)
    wide = wide.reset_index()
    png = budget_chart_png(equal_budget(results_dir, dense=True))
    intro = (
        "Mean over tasks and seeds of the best node's FSR had the search stopped after its first N nodes "
        "or its first B dollars of model calls (each node's FSR from its own search run, unconfirmed)."
    )
    md = f"\n## FSR at equal budget\n\n{intro}\n\n" + _markdown_table(wide)
    img = ""
    if png is not None:
        (results_dir / "budget.png").write_bytes(png)
        md += "\n![FSR at equal budget](budget.png)\n"
        img = f'<img alt="FSR at equal budget" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    page = f"<h2>FSR at equal budget</h2><p>{html.escape(intro)}</p>{wide.to_html(index=False, na_rep='-')}{img}"
    return md, page


def write_report(results_dir: Path) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` (with `fsr.png`) into the results root."""
    df = collect(results_dir)
    summ = summary(df)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    per_task = df[DISPLAY_COLUMNS + TRUST_DISPLAY_COLUMNS]
    md = [
        f"# speedrun report\n\n{len(df)} evaluations under `{results_dir}`, {stamp}.\n",
        f"## {SUMMARY_TITLE}\n",
        _markdown_table(summ),
        "\n## Every evaluation\n",
        _markdown_table(per_task),
    ]
    png = _chart_png(df)
    if png is not None:
        (results_dir / "fsr.png").write_bytes(png)
        md.insert(3, "\n![FSR per task](fsr.png)\n")
    budget_md, budget_html = _equal_budget_section(results_dir)
    md.append(budget_md)
    md_path = results_dir / "report.md"
    md_path.write_text("\n".join(md))
    img = (
        f'<img alt="FSR per task" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        if png is not None
        else ""
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>speedrun report</title>"
        "<style>body{font-family:sans-serif;max-width:70em;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}</style>"
        f"<h1>speedrun report</h1><p>{len(df)} evaluations under <code>{html.escape(str(results_dir))}</code>, "
        f"{stamp}.</p><h2>{SUMMARY_TITLE}</h2>{summ.to_html(index=False, na_rep='-')}"
        f"{img}<h2>Every evaluation</h2>{per_task.to_html(index=False, na_rep='-')}{budget_html}"
    )
    html_path = results_dir / "report.html"
    html_path.write_text(page)
    return md_path, html_path
