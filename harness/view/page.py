"""HTML for a run and for the index: Jinja2 templates with autoescaping on, so everything a
candidate or a model wrote (logs, diffs, transcripts, errors) reaches the page as text.

As a second wall, each page carries a Content-Security-Policy that lets only its own inline
script and style run (by hash) and loads nothing from anywhere: a page that did contain an
injected `<script>` would still not run it."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path

import jinja2

from harness.view.load import NodeView, RunView
from harness.view.plots import loss_plot, tree_plot

TEMPLATES = Path(__file__).parent / "templates"
STATUSES = ("valid", "invalid", "buggy", "failed", "running")
ACTIONS = ("draft", "improve", "debug")


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@cache
def _assets() -> tuple[str, str, str]:
    css = (TEMPLATES / "view.css").read_text()
    js = (TEMPLATES / "view.js").read_text()
    csp = (
        f"default-src 'none'; img-src data:; style-src {_sha(css)}; script-src {_sha(js)}; "
        "base-uri 'none'; form-action 'none'"
    )
    return css, js, csp


def diff_lines(text: str) -> list[tuple[str, str]]:
    """A unified diff's lines, each with the class that colours it."""
    out = []
    for line in text.splitlines():
        if line.startswith(("+++", "---")):
            cls = "file"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        out.append((cls, line))
    return out


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _loss(n: NodeView) -> str:
    r = n.node.result if n.node else None
    return "-" if r is None or r.val_loss is None else f"{r.val_loss:.4f}"


# A served live run is rendered again on every reload: its finished nodes' figures are not redrawn.
@lru_cache(maxsize=512)
def _loss_png(
    curve: tuple[tuple[int, float], ...],
    refs: tuple[tuple[str, tuple[tuple[int, float], ...]], ...],
    target: float | None,
    label: str,
) -> str | None:
    return loss_plot(curve, dict(refs), target, label)


@lru_cache(maxsize=64)
def _tree_png(nodes: tuple[tuple[int, int | None, str, str], ...], root: str, best: int | None) -> str:
    return tree_plot(nodes, root, best)


def render_run(run: RunView, *, index_href: str = "index.html", refresh_s: int | None = None) -> str:
    """One self-contained page for a run (its figures inline)."""
    css, js, csp = _assets()
    children: dict[int, list[NodeView]] = {}
    known = {n.id for n in run.nodes}
    for n in run.nodes:
        key = n.parent if n.parent is not None and n.parent in known else -1
        children.setdefault(key, []).append(n)
    counts = {s: sum(1 for n in run.nodes if n.status == s) for s in STATUSES}
    tree_png = _tree_png(tuple((n.id, n.parent, n.action, n.status) for n in run.nodes), run.records.from_id, run.best)
    refs = tuple((rid, tuple(curve)) for rid, curve in run.references.items())

    def loss_png(n: NodeView) -> str | None:
        if not n.curve:
            return None  # references alone say nothing about this node
        return _loss_png(tuple(n.curve), refs, run.target, f"node {n.id}")

    return (
        _env()
        .get_template("run.html.j2")
        .render(
            csp=csp,
            css=css,
            js=js,
            refresh_s=refresh_s if run.live else None,
            run=run,
            info=run.info,
            score=run.info.score,
            cost=run.cost,
            counts=", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none yet",
            statuses=STATUSES,
            actions=ACTIONS,
            children=children,
            tree_png=tree_png,
            loss_png=loss_png,
            diff_lines=diff_lines,
            ms=ms,
            num=num,
            loss=_loss,
            index_href=index_href,
        )
    )


def render_index(rows: Sequence[dict[str, object]], results_dir: Path, *, refresh_s: int | None = None) -> str:
    css, js, csp = _assets()
    return (
        _env()
        .get_template("index.html.j2")
        .render(
            csp=csp,
            css=css,
            js=js,
            refresh_s=refresh_s,
            runs=rows,
            results_dir=str(results_dir),
            stamp=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
    )
