"""A results root as a static site: `index.html` and one self-contained page per run."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from harness.events import Event, EventSink, ignore
from harness.rundir import run_dirs
from harness.view.load import RunView, load_run
from harness.view.page import num, render_index, render_run

#: Where `speedrun view` writes the site by default, under the results root.
VIEW_DIR = "view"
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,200}")


def page_name(run_dir: Path) -> str:
    """The page's file name: the run id when it is a plain name, else a hash of it."""
    name = run_dir.name
    if _SAFE.fullmatch(name) and name not in ("index",):
        return f"{name}.html"
    return "run-" + hashlib.sha256(name.encode()).hexdigest()[:12] + ".html"


def index_row(run: RunView) -> dict[str, object]:
    info, score = run.info, run.info.score
    best = next((n for n in run.nodes if n.id == run.best), None)
    return {
        "href": page_name(run.run_dir),
        "run_id": info.run_id,
        "task": info.config.task,
        "model": info.config.model,
        "scaffold": info.config.scaffold,
        "hints": info.config.hints,
        "seed": info.config.seed,
        "status": info.status,
        "fsr": num(score.fsr) if score else "-",
        "best": "-" if run.best is None else f"#{run.best}",
        "similarity": num(best.similarity.lines) if best and best.similarity else "-",
        "nodes": len(run.nodes),
        "valid": sum(1 for n in run.nodes if n.status == "valid"),
        "tokens": info.usage.total_tokens,
        "cost": f"{info.usage.cost_usd:.4f}",
        "hours": f"{run.cost.search_hours + run.cost.confirm_hours:.3f}",
    }


def load_runs(results_dir: Path) -> list[RunView]:
    return [run for d in run_dirs(results_dir) if (run := load_run(d)) is not None]


def build_site(results_dir: Path, out_dir: Path | None = None, on_event: EventSink = ignore) -> Path:
    """Write the site for every run under `results_dir`; returns the index's path."""
    out = out_dir or results_dir / VIEW_DIR
    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(results_dir)
    for run in runs:
        path = out / page_name(run.run_dir)
        path.write_text(render_run(run))
        on_event(Event("info", f"wrote {path}"))
    index = out / "index.html"
    index.write_text(render_index([index_row(r) for r in runs], results_dir))
    return index
