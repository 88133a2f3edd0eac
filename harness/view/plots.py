"""The page's figures, drawn by matplotlib and embedded as PNG data URIs (a page is one file)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LineStyle = Literal["solid", "dashed"]

STATUS_COLOURS = {
    "valid": "#1a9850",
    "invalid": "#f0a030",
    "buggy": "#d73027",
    "failed": "#8c8c8c",
    "running": "#4575b4",
}
ACTION_COLOURS = {"draft": "#404040", "improve": "#1f78b4", "debug": "#c51b7d"}
ACTION_STYLES: dict[str, LineStyle] = {"draft": "solid", "improve": "solid", "debug": "dashed"}
#: Record i and record i+1 in the loss plots.
REFERENCE_COLOURS = ("#7f7f7f", "#000000")


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    return plt


def data_uri(fig: Figure, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def loss_plot(
    curve: Sequence[tuple[int, float]],
    references: Mapping[str, Sequence[tuple[int, float]]],
    target: float | None,
    label: str,
) -> str | None:
    """The node's validation loss by step against record i's and record i+1's."""
    if not curve and not references:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.0))
    for (rid, ref), colour in zip(references.items(), REFERENCE_COLOURS, strict=False):
        xs, ys = zip(*ref, strict=True)
        ax.plot(xs, ys, color=colour, linewidth=1.2, linestyle="--", marker=".", label=f"record {rid}")
    if curve:
        xs, ys = zip(*curve, strict=True)
        ax.plot(xs, ys, color="#e6550d", linewidth=2.0, marker="o", markersize=3, label=label)
    if target is not None:
        ax.axhline(target, color="#1a9850", linewidth=0.8, linestyle=":", label=f"target {target:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return data_uri(fig)


def _layout(parents: dict[int, int | None]) -> dict[int, tuple[float, int]]:
    """x (leaf order, parents centred over their children) and depth of every node; the
    root (the starting script) is -1 at depth 0."""
    children: dict[int, list[int]] = {-1: []}
    for nid in sorted(parents):
        parent = parents[nid]
        key = -1 if parent is None or parent not in parents else parent
        children.setdefault(key, []).append(nid)
    pos: dict[int, tuple[float, int]] = {}
    next_x = [0.0]

    def place(nid: int, depth: int) -> float:
        kids = children.get(nid, [])
        if not kids:
            x = next_x[0]
            next_x[0] += 1.0
        else:
            xs = [place(k, depth + 1) for k in kids]
            x = (xs[0] + xs[-1]) / 2
        pos[nid] = (x, depth)
        return x

    place(-1, 0)
    return pos


def tree_plot(nodes: Sequence[tuple[int, int | None, str, str]], root_label: str, best: int | None) -> str:
    """The search tree: (id, parent, action, status) per node; edges coloured by the action
    that made the child, nodes by their status, the best node ringed."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    parents = {nid: parent for nid, parent, _, _ in nodes}
    pos = _layout(parents)
    width = max(4.0, 0.7 * (max((x for x, _ in pos.values()), default=0) + 2))
    depth = max((d for _, d in pos.values()), default=0)
    fig, ax = plt.subplots(figsize=(min(width, 16.0), 1.1 * depth + 1.6))
    for nid, parent, action, _status in nodes:
        px, pd_ = pos[-1 if parent is None or parent not in parents else parent]
        x, d = pos[nid]
        ax.plot(
            [px, x],
            [-pd_, -d],
            color=ACTION_COLOURS.get(action, "#404040"),
            linestyle=ACTION_STYLES.get(action, "solid"),
            linewidth=2,
            zorder=1,
        )
    rx, _ = pos[-1]
    ax.scatter([rx], [0], s=420, marker="s", color="#ffffff", edgecolors="#404040", zorder=2)
    ax.annotate(root_label, (rx, 0), xytext=(0, 14), textcoords="offset points", ha="center", fontsize=8)
    for nid, _parent, _action, status in nodes:
        x, d = pos[nid]
        ring = "#000000" if nid == best else "#ffffff"
        ax.scatter([x], [-d], s=420, color=STATUS_COLOURS.get(status, "#8c8c8c"), edgecolors=ring, linewidths=2.5)
        ax.annotate(str(nid), (x, -d), ha="center", va="center", fontsize=8, color="white", weight="bold")
    handles = [
        Line2D([], [], color=c, linestyle=ACTION_STYLES[a], linewidth=2, label=a) for a, c in ACTION_COLOURS.items()
    ] + [Line2D([], [], color=c, marker="o", linestyle="", markersize=9, label=s) for s, c in STATUS_COLOURS.items()]
    ax.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    ax.set_axis_off()
    ax.margins(x=0.15, y=0.25)
    fig.tight_layout()
    return data_uri(fig)
