"""Fraction of Speedup Recovered, and its mean over tasks with a confidence interval.

    FSR = (t_i - t') / (t_i - t_{i+1})  =  (1 - t'/t_i) / (1 - t_{i+1}/t_i)

The second form needs only ratios, which is how times are compared on a noisy machine:
measured side by side (A B A B ...), the median of the paired ratios.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def fsr(t_ref: float, t_next: float, t_candidate: float | None, min_speedup: float = 0.0) -> float:
    """FSR from absolute times. A missing candidate, or one not faster than record i by more
    than `min_speedup` (the track's timing noise, as a fraction of t_ref), scores 0."""
    if t_candidate is None or t_candidate >= t_ref * (1.0 - min_speedup):
        return 0.0
    if t_ref <= t_next:
        raise ValueError(f"record i+1 ({t_next:.0f} ms) is not faster than record i ({t_ref:.0f} ms)")
    return (t_ref - t_candidate) / (t_ref - t_next)


def fsr_from_ratios(candidate_ratio: float | None, next_ratio: float, min_speedup: float = 0.0) -> float:
    """FSR from t'/t_i and t_{i+1}/t_i."""
    return fsr(1.0, next_ratio, candidate_ratio, min_speedup)


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Ratios of runs measured side by side (the k-th of one with the k-th of the other)."""
    return [a / b for a, b in zip(numerators, denominators, strict=False) if b > 0]


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and a Student-t confidence interval (the benchmark's headline number)."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    mean = statistics.fmean(values)
    if n == 1:
        return (mean, math.nan, math.nan)
    from scipy import stats

    sem = statistics.stdev(values) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sem
    return (mean, mean - half, mean + half)
