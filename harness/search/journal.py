"""The search tree on disk: an append-only `journal.jsonl` that resume replays.

A node line is written once, when the node is finished; a node that was started but never
finished (the harness was killed) is simply run again under the same id on resume."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from harness.models.base import Usage
from harness.outcome import RunResult

ActionKind = Literal["draft", "improve", "debug"]
NodeStatus = Literal["valid", "invalid", "buggy", "failed"]

JOURNAL = "journal.jsonl"


class Node(BaseModel):
    """One candidate: how it was made, how its run ended, what it cost.

    status: `valid` reached the target within the rules; `invalid` ran but missed the target
    or broke a rule; `buggy` crashed, timed out or printed no result (a case for debugging);
    `failed` never ran (the model or its edits failed)."""

    schema_version: int = 1
    id: int
    parent: int | None
    action: ActionKind
    depth: int = 0
    debug_depth: int = 0
    status: NodeStatus
    result: RunResult | None = None
    error: str | None = None
    summary: str = ""
    plan: str = ""
    edit_notes: list[str] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    started_at: datetime | None = None
    finished_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def valid(self) -> bool:
        return self.status == "valid"

    @property
    def time_ms(self) -> float | None:
        return self.result.time_ms if self.result and self.valid else None


class JournalEvent(BaseModel):
    schema_version: int = 1
    event: Literal["started", "node", "stopped", "resumed"]
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    node_id: int | None = None
    node: Node | None = None
    action: ActionKind | None = None
    parent: int | None = None
    detail: str = ""


class Journal:
    """The finished nodes of a run, plus appending new events. Thread-safe."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / JOURNAL
        self._lock = threading.Lock()
        self.nodes: dict[int, Node] = {}
        #: node id -> (action, parent) for every node ever started
        self.started: dict[int, tuple[ActionKind, int | None]] = {}
        #: node id -> the scaffold's note for it (kept for a resumed node's prompt)
        self.notes: dict[int, str] = {}
        if self.path.is_file():
            self._replay()

    def _replay(self) -> None:
        text = self.path.read_text()
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                ev = JournalEvent.model_validate_json(line)
            except ValueError:
                continue  # a line cut short by a kill; everything before it stands
            if ev.event == "node" and ev.node is not None:
                self.nodes[ev.node.id] = ev.node
            elif ev.event == "started" and ev.node_id is not None and ev.action is not None:
                self._started(ev)
        if text and not text.endswith("\n"):
            with open(self.path, "a") as f:
                f.write("\n")

    def append(self, event: JournalEvent) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(event.model_dump_json() + "\n")
                f.flush()
            if event.event == "node" and event.node is not None:
                self.nodes[event.node.id] = event.node
            elif event.event == "started" and event.node_id is not None and event.action is not None:
                self._started(event)

    def _started(self, event: JournalEvent) -> None:
        assert event.node_id is not None and event.action is not None
        self.started[event.node_id] = (event.action, event.parent)
        if event.detail:
            self.notes[event.node_id] = event.detail

    def finish(self, node: Node) -> None:
        self.append(JournalEvent(event="node", node_id=node.id, node=node))

    def unfinished(self) -> dict[int, tuple[ActionKind, int | None]]:
        """Nodes started but never finished (the harness was stopped): resume runs them again."""
        return {k: v for k, v in sorted(self.started.items()) if k not in self.nodes}

    def next_id(self) -> int:
        return max([*self.nodes, *self.started], default=-1) + 1

    # Views the scaffolds and the scorer read.
    def all(self) -> list[Node]:
        return [self.nodes[k] for k in sorted(self.nodes)]

    def valid(self) -> list[Node]:
        return [n for n in self.all() if n.valid]

    def best(self) -> Node | None:
        """The fastest valid node (ties: the earlier one)."""
        valid = self.valid()
        return min(valid, key=lambda n: (n.time_ms, n.id)) if valid else None

    def children(self, node_id: int | None) -> list[Node]:
        return [n for n in self.all() if n.parent == node_id]

    def usage(self) -> Usage:
        total = Usage()
        for n in self.all():
            total = total + n.usage
        return total
