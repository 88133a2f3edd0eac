"""From the search's journal to a task's FSR: the ladder of cases a best node can be in.

no valid node -> 0 · record i unchanged -> 0 · no confirmation asked for (--confirm-runs 0) -> the
node's own time · far slower than record i -> 0 · else confirmed side by side -> FSR
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from harness.eval.log import Confirmation, Reference, TaskScore
from harness.eval.model_check import HOLDOUT_MARGIN
from harness.scoring import FsrEstimate, estimate_fsr, fsr, fsr_from_ratios, record_rule
from harness.search.journal import Journal

#: A best node this much slower than record i in its own run is not confirmed: run-to-run noise
#: on the slowest machines seen is about ±12%, so no re-measurement turns it into a speed-up.
FAR_SLOWER_RATIO = 1.25


def score_task(
    task_id: str,
    journal: Journal,
    ref: Reference,
    *,
    min_speedup: float,
    confirm_runs: int,
    target: float,
    unchanged: Callable[[int], bool],
    confirm: Callable[[int], Confirmation],
) -> TaskScore:
    """`unchanged(node)` says whether a node is record i's code as it was; `confirm(node)` runs the
    side-by-side confirmation of a node."""
    best = journal.best()
    protection = list(best.result.protection) if best and best.result else []
    common = {
        "task": task_id,
        "reference": ref,
        "nodes": len(journal.nodes),
        "valid_nodes": len(journal.valid()),
        "best_node": best.id if best else None,
        "best_time_ms": best.time_ms if best else None,
    }
    if ref.next_ratio >= 1:
        note = f"undefined: record {ref.to_record} is not faster than {ref.from_record} at this target"
        return TaskScore(fsr=0.0, candidate_ratio=None, note=note, protection=protection, **common)
    if best is None or best.time_ms is None:
        return TaskScore(fsr=0.0, candidate_ratio=None, note="no valid node", protection=protection, **common)
    own_ratio = best.time_ms / ref.t_ref_ms
    if unchanged(best.id):
        # Record i's own code cannot be faster than record i: re-measuring it only costs time.
        note = f"the best node is record {ref.from_record} unchanged"
        return TaskScore(fsr=0.0, candidate_ratio=own_ratio, note=note, protection=protection, **common)
    if confirm_runs <= 0:
        value = fsr(ref.t_ref_ms, ref.t_next_ms, best.time_ms, min_speedup)
        note = "from the node's own run"
        return TaskScore(fsr=value, candidate_ratio=own_ratio, note=note, protection=protection, **common)
    if own_ratio >= FAR_SLOWER_RATIO:
        note = "slower than record i"
        return TaskScore(fsr=0.0, candidate_ratio=own_ratio, note=note, protection=protection, **common)
    conf = confirm(best.id)
    ratio = statistics.median(conf.ratios) if all(conf.candidate_valid) and conf.ratios else None
    note = "" if ratio is not None else "the best node did not reach the target in every confirmation run"
    next_ratio = next_ratio_of(conf, ref)
    if conf.next_ratios and next_ratio >= 1:
        note = (
            f"undefined: record {ref.to_record} was not faster than {ref.from_record} in the confirmation "
            f"rounds (t_i+1/t_i {next_ratio:.3f})"
        )
        return TaskScore(fsr=0.0, candidate_ratio=ratio, confirmation=conf, note=note, protection=protection, **common)
    held_out = conf.holdout_problem(HOLDOUT_MARGIN)
    if held_out is not None:
        ratio, note = None, held_out
    elif conf.reference_holdout:
        protection = [*protection, "held-out-checked"]
    verdict = record_rule(conf.candidate_val_loss, target) if len(set(conf.seeds)) > 1 else None
    if verdict is not None and not verdict.counts and ratio is not None:
        ratio, note = None, f"record rule: {verdict.label()}"
    estimate = None
    if ratio is not None:
        try:
            estimate = confirmation_estimate(conf, ref, min_speedup)
        except ValueError as exc:
            note = f"no interval: {exc}"
    if ratio is not None and ratio >= 1.0 - min_speedup:
        note = f"not faster than record i beyond the track's noise margin ({min_speedup:.0%})"
    return TaskScore(
        fsr=fsr_from_ratios(ratio, next_ratio, min_speedup),
        candidate_ratio=ratio,
        confirmation=conf,
        estimate=estimate,
        record_rule=verdict,
        note=note,
        protection=[*protection, "confirmed"],
        **common,
    )


def confirmation_estimate(conf: Confirmation, ref: Reference, min_speedup: float) -> FsrEstimate:
    """The FSR interval of a confirmation: over its own rounds where record i+1 ran in them,
    else against the reference's t_{i+1}/t_i (calibration rounds or the paper). ValueError
    where record i+1 was not faster in some round (`estimate_fsr`)."""
    in_rounds = bool(conf.next_ratios)
    return estimate_fsr(
        conf.ratios,
        next_ratio_of(conf, ref),
        next_ratios=conf.next_ratios if in_rounds else ref.next_ratios,
        min_speedup=min_speedup,
        next_in_rounds=in_rounds,
    )


def next_ratio_of(conf: Confirmation, ref: Reference) -> float:
    """The score's t_{i+1}/t_i: the median over the confirmation's rounds where record i+1 ran in
    them, else the reference's."""
    return statistics.median(conf.next_ratios) if conf.next_ratios else ref.next_ratio
