"""A run directory read into what its page shows: the tree, and per node its diffs, log,
curve, transcript and cost. Everything comes through `harness.rundir` (bounded, no links)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from harness.coder.transcript import Exchange
from harness.costs import RunCost, node_fsr, run_cost
from harness.errors import SpeedrunError
from harness.eval.calibration import REFERENCES_DIR
from harness.eval.log import RunInfo
from harness.llm_judge import Verdict, read_verdict
from harness.logparse import parse_log
from harness.manifests.tracks import get_task
from harness.rundir import (
    DIFF_MAX,
    LOG_PARSE_MAX,
    Bounded,
    JournalView,
    node_code,
    node_path,
    read_bounded,
    read_exchanges,
    read_journal,
    read_run_info,
)
from harness.search.journal import ActionKind, Node
from harness.search.node import ANALYSIS_MD
from harness.similarity import Similarity, TaskRecords, record_diff, similarity, task_records

#: Shown of a node's log: its head and its tail, the middle cut.
LOG_SHOW_MAX = 128 << 10
ANALYSIS_MAX = 16 << 10

Curve = list[tuple[int, float]]


@dataclass
class NodeView:
    id: int
    parent: int | None
    action: ActionKind
    #: `running` for a node started but not finished yet.
    status: str
    node: Node | None = None
    diff_parent: Bounded | None = None
    diff_record: str | None = None
    log: Bounded | None = None
    curve: Curve = field(default_factory=list)
    search_fsr: float | None = None
    similarity: Similarity | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    analysis: str | None = None
    verdict: Verdict | None = None
    rules_verdict: Verdict | None = None


@dataclass
class RunView:
    run_dir: Path
    info: RunInfo
    journal: JournalView
    records: TaskRecords
    nodes: list[NodeView]
    references: dict[str, Curve]
    cost: RunCost

    @property
    def best(self) -> int | None:
        return self.info.score.best_node if self.info.score else None

    @property
    def live(self) -> bool:
        return self.info.status == "running"

    @property
    def target(self) -> float | None:
        if self.info.config.target_val_loss is not None:
            return self.info.config.target_val_loss
        try:
            return get_task(self.info.config.task).target_val_loss
        except SpeedrunError:
            return None


def curve_of(run_dir: Path, rel: PurePosixPath | str) -> Curve:
    got = read_bounded(run_dir, rel, LOG_PARSE_MAX)
    return list(parse_log(got.text).val_history) if got else []


def _reference_curves(run_dir: Path, records: TaskRecords) -> dict[str, Curve]:
    out: dict[str, Curve] = {}
    for rid in (records.from_id, records.to_id):
        curve = curve_of(run_dir, PurePosixPath(REFERENCES_DIR, f"{rid}.log"))
        if not curve and rid == records.from_id:
            curve = curve_of(run_dir, "confirm/0-reference/run.log")  # a confirmation ran record i
        if curve:
            out[rid] = curve
    return out


def _node(
    run_dir: Path,
    info: RunInfo,
    records: TaskRecords,
    nid: int,
    node: Node | None,
    started: tuple[ActionKind, int | None],
) -> NodeView:
    action, parent = (node.action, node.parent) if node else started
    view = NodeView(nid, parent, action, node.status if node else "running", node)
    view.diff_parent = read_bounded(run_dir, node_path(nid, "diff.patch"), DIFF_MAX)
    code = node_code(run_dir, nid, records.main_file) if view.diff_parent is not None else None
    view.diff_record = record_diff(records, code)
    if code is not None and records.from_code is not None and records.to_code is not None:
        view.similarity = similarity(records.from_code, records.to_code, code)
    view.log = read_bounded(run_dir, node_path(nid, "run.log"), LOG_SHOW_MAX)
    view.curve = curve_of(run_dir, node_path(nid, "run.log")) if view.log is not None else []
    if node is not None:
        view.search_fsr = node_fsr(node, info) if info.score else None
    view.exchanges = read_exchanges(run_dir, node_path(nid))
    analysis = read_bounded(run_dir, node_path(nid, ANALYSIS_MD), ANALYSIS_MAX)
    view.analysis = analysis.text if analysis else None
    view.verdict = read_verdict(run_dir, nid)
    view.rules_verdict = read_verdict(run_dir, nid, "rules")
    return view


def load_run(run_dir: Path) -> RunView | None:
    """The run at `run_dir`, or None when it has no readable run.json."""
    info = read_run_info(run_dir)
    if info is None:
        return None
    journal = read_journal(run_dir)
    records = task_records(info, run_dir)
    ids = sorted(set(journal.nodes) | set(journal.started))
    nodes = [
        _node(run_dir, info, records, nid, journal.nodes.get(nid), journal.started.get(nid, ("draft", None)))
        for nid in ids
    ]
    return RunView(run_dir, info, journal, records, nodes, _reference_curves(run_dir, records), run_cost(run_dir, info))
