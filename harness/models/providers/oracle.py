"""Offline models that answer in the real edit format: `oracle` (the human record's change) and
`null` (no change). They check the harness itself: oracle should score FSR near 1, null 0."""

from __future__ import annotations

import difflib

from harness.coder.edits import EditBlock, apply_blocks, render_block
from harness.models.contract import CallContext, Completion, Message, Model, Usage
from harness.models.registry import provider


@provider
class OracleModel(Model):
    """Answers with the edits that turn the current script into the task's next record."""

    provider = "oracle"
    deterministic = True
    takes_model_name = False
    trusted_code = True

    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        from harness.manifests.tracks import get_task, load_track

        if _purpose(context) != "code":
            return Completion(text=_remark(self.provider, context), usage=Usage(calls=1), model=self.name)
        task = get_task(context.task_id)
        target = load_track(task.track).record(task.to_record).code()
        blocks = diff_blocks(context.current_code, target, context.file_name)
        if not blocks:
            return Completion(text=_noop_answer(context), usage=Usage(calls=1), model=self.name)
        body = "\n".join(render_block(b.file, b.search, b.replace) for b in blocks)
        text = f"Applying the change of record {task.to_record}.\n\n{body}"
        return Completion(text=text, usage=Usage(calls=1), model=self.name)


@provider
class NullModel(Model):
    """Answers with an edit that changes nothing."""

    provider = "null"
    deterministic = True
    takes_model_name = False
    trusted_code = True

    def generate(self, messages: list[Message], context: CallContext) -> Completion:
        if _purpose(context) != "code":
            return Completion(text=_remark(self.provider, context), usage=Usage(calls=1), model=self.name)
        return Completion(text=_noop_answer(context), usage=Usage(calls=1), model=self.name)


def _purpose(context: CallContext) -> str:
    """What a call is for: the engine's analysis and scaffolds' own calls say so."""
    return context.purpose


def _remark(provider: str, context: CallContext) -> str:
    """A fixed short answer to a call that is not for code (an analysis, a scaffold's question),
    so that offline runs with `--analyze` or an ideation step stay deterministic."""
    where = f" of node {context.node_id}" if context.node_id is not None else ""
    return f"[{provider}] no {_purpose(context)}{where}: the offline model only edits code."


def _noop_answer(context: CallContext) -> str:
    lines = context.current_code.splitlines(keepends=True)
    # The first line that occurs once in the file, replaced by itself.
    line = next((ln for ln in lines if ln.strip() and context.current_code.count(ln) == 1), lines[0])
    return "No change.\n\n" + render_block(context.file_name, line, line)


def diff_blocks(old: str, new: str, file: str) -> list[EditBlock]:
    """SEARCH/REPLACE blocks that turn `old` into `new`, each SEARCH unique in `old`."""
    if old == new:
        return []
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    groups = difflib.SequenceMatcher(None, a, b, autojunk=False).get_grouped_opcodes(1)
    regions = [[g[0][1], g[-1][2], g[0][3], g[-1][4]] for g in groups]
    for _ in range(len(a) + 1):
        changed = False
        for r in regions:
            while r[0] < r[1] + 1 and (
                "".join(a[r[0] : r[1]]).strip() == "" or old.count("".join(a[r[0] : r[1]])) != 1
            ):
                if r[0] == 0 and r[1] == len(a):
                    break
                # Equal lines around a change are aligned in both files, so grow both sides alike.
                if r[1] < len(a):
                    r[1] += 1
                    r[3] += 1
                elif r[0] > 0:
                    r[0] -= 1
                    r[2] -= 1
                changed = True
        merged: list[list[int]] = []
        for r in sorted(regions):
            if merged and r[0] <= merged[-1][1]:
                last = merged[-1]
                last[1], last[3] = max(last[1], r[1]), max(last[3], r[3])
            else:
                merged.append(list(r))
        changed = changed or len(merged) != len(regions)
        regions = merged
        if not changed:
            break
    blocks = [EditBlock(file, "".join(a[r[0] : r[1]]), "".join(b[r[2] : r[3]])) for r in regions]
    try:
        if apply_blocks({file: old}, blocks).files[file] == new:
            return blocks
    except Exception:
        pass
    return [EditBlock(file, old, new)]
