"""Fraction of Speedup Recovered, its precision, the speedrun's record rule, and the benchmark score.

    FSR = (t_i - t') / (t_i - t_{i+1})  =  (1 - t'/t_i) / (1 - t_{i+1}/t_i)

The second form needs only ratios, which is how times are compared on a noisy machine:
measured side by side (A B A B ...), the median of the paired ratios. `docs/scoring.md`
gives the definitions, the defaults and the measured noise behind them.

Everything here is pure: numbers in, numbers (or pydantic models to store) out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

#: Fewest pairs for which the interval comes from a bootstrap. Below it the bootstrap of a
#: median only re-discovers the pairs' range while claiming 95%; the range's true coverage
#: of the median, 1 - 2^(1-n), first exceeds 95% at n = 6 (96.9%).
MIN_BOOTSTRAP_PAIRS = 6
#: Resamples per bootstrap: enough that the 2.5% and 97.5% quantiles move by well under 0.01 FSR.
N_RESAMPLES = 9999
#: Fixed, so that the same measurements always print the same interval (a resumed run agrees).
BOOTSTRAP_SEED = 0


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


# ---- FSR with an interval, from paired runs ----------------------------------------------------------

FsrMethod = Literal["bootstrap", "range", "single"]


class FsrEstimate(BaseModel):
    """An FSR from paired runs, with the interval those runs support; stored in run.json.

    `fsr` is the score (median paired ratio, the track's noise margin applied). `low`/`high`
    bound the same score, margin included, so a candidate that is clearly not faster reads
    `[0.00, 0.00]`. `confidence` is the interval's coverage: the nominal level for a
    bootstrap, the exact distribution-free coverage for the range of a few pairs, 0 with no
    interval (one pair)."""

    schema_version: int = 1
    fsr: float
    low: float | None
    high: float | None
    pairs: int
    method: FsrMethod
    confidence: float
    #: Median of the paired candidate/record-i ratios.
    candidate_ratio: float
    #: t_{i+1}/t_i used for the point estimate.
    next_ratio: float
    #: Calibration rounds whose spread of t_{i+1}/t_i is in the interval (0: taken as exact).
    calibration_rounds: int = 0
    #: The interval with t_{i+1}/t_i taken as exact: the part that more pairs can narrow.
    pairs_low: float | None = None
    pairs_high: float | None = None
    #: t_{i+1}/t_i was measured in the same rounds as the candidate (record i, record i+1 and
    #: the candidate side by side), so each round gives both ratios and more rounds narrow both.
    next_in_rounds: bool = False

    @property
    def width(self) -> float | None:
        return None if self.low is None or self.high is None else self.high - self.low

    @property
    def pairs_width(self) -> float | None:
        return None if self.pairs_low is None or self.pairs_high is None else self.pairs_high - self.pairs_low

    @property
    def pairs_confidence(self) -> float:
        """Coverage of `pairs_low`/`pairs_high`: the range's of the pairs alone, or the bootstrap's
        (with record i+1 in the rounds, the whole interval's)."""
        return range_coverage(self.pairs) if self.method == "range" and not self.next_in_rounds else self.confidence

    def label(self) -> str:
        """`FSR 0.91 [0.78, 1.05] from 8 pairs`, saying how the interval was formed when it is
        not a 95% bootstrap."""
        noun = "round" if self.next_in_rounds else "pair"
        noun += "" if self.pairs == 1 else "s"
        if self.low is None or self.high is None:
            return f"FSR {self.fsr:.2f} from {self.pairs} {noun} (no interval)"
        text = f"FSR {self.fsr:.2f} [{self.low:.2f}, {self.high:.2f}] from {self.pairs} {noun}"
        if self.method == "range":
            text += f" (range of the runs, {self.confidence:.0%} coverage)"
        elif abs(self.confidence - 0.95) > 1e-9:
            text += f" ({self.confidence:.0%} bootstrap)"
        return text

    def __str__(self) -> str:
        return self.label()


def range_coverage(n: int) -> float:
    """Probability that the range of n independent runs contains their distribution's median."""
    return 0.0 if n < 2 else 1.0 - 2.0 ** (1 - n)


def _scored(cand: Any, nxt: Any, min_speedup: float) -> Any:
    """The FSR score of (arrays of) candidate and next-record ratios, margin applied: the
    vectorised `fsr_from_ratios`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cand >= 1.0 - min_speedup, 0.0, (1.0 - cand) / (1.0 - nxt))


def estimate_fsr(
    candidate_ratios: Sequence[float],
    next_ratio: float,
    *,
    next_ratios: Sequence[float] = (),
    min_speedup: float = 0.0,
    confidence: float = 0.95,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    next_in_rounds: bool = False,
) -> FsrEstimate:
    """FSR and its interval from the paired ratios t'/t_i of the confirmation runs.

    `next_ratio` is t_{i+1}/t_i (a calibration's median paired ratio, the paper's, or the
    median over the confirmation rounds). `next_ratios`, its per-round paired ratios, puts
    record i+1's own spread into the interval; with fewer than two rounds, or for the paper's
    times, it is taken as exact. With `next_in_rounds` they come from the confirmation's own
    rounds (record i, record i+1 and the candidate run side by side, one ratio of each per
    round): both spreads then narrow with more rounds, and the two ratios of a round share its
    record-i run, so rounds are resampled whole. How the interval is formed:

    - 1 pair: no interval (`single`), nothing says how far that one pair is off.
    - 2..5 pairs (`range`): from the extreme runs, i.e. the worst and best combination of the
      pairs' range and the calibration rounds' range. A range of n runs contains the median
      with probability 1 - 2^(1-n) (50%, 75%, 87.5%, 93.8% for 2..5), the product of the two
      when both spread (calibration rounds, independent of the pairs) or at least their sum
      minus one (rounds shared with the pairs); that coverage is reported, not a nominal 95%.
    - 6 or more pairs (`bootstrap`): scipy's percentile bootstrap of the score, resampling
      pairs and calibration rounds independently, or whole rounds. Percentile, not BCa: BCa's
      acceleration comes from the jackknife, which is unreliable for a median.

    Raises ValueError with no pairs, or when record i+1 is not faster than record i (in the
    point ratio or in any calibration round: its spread then has no bound).
    """
    cand = np.asarray(candidate_ratios, dtype=float)
    if cand.size == 0:
        raise ValueError("no paired runs to estimate FSR from")
    nxt = np.asarray(next_ratios, dtype=float)
    if next_in_rounds and nxt.size != cand.size:
        raise ValueError(f"{nxt.size} ratios of record i+1 for {cand.size} rounds: each round has one of each")
    if next_ratio >= 1 or (nxt.size and float(nxt.max()) >= 1):
        raise ValueError(
            f"record i+1 is not faster than record i (t_i+1/t_i {next_ratio:.3f}"
            + (f", rounds {', '.join(f'{r:.3f}' for r in nxt)}" if nxt.size else "")
            + "): the FSR has no bound"
        )
    spread = nxt if nxt.size >= 2 else None
    point_ratio = float(np.median(cand))

    def interval(spread: Any) -> tuple[float | None, float | None, FsrMethod, float]:
        return _interval(cand, spread, next_ratio, min_speedup, confidence, n_resamples, seed, next_in_rounds)

    low, high, method, coverage = interval(spread)
    pairs_low, pairs_high = (low, high) if spread is None or next_in_rounds else interval(None)[:2]
    return FsrEstimate(
        fsr=fsr_from_ratios(point_ratio, next_ratio, min_speedup),
        low=low,
        high=high,
        pairs=int(cand.size),
        method=method,
        confidence=coverage,
        pairs_low=pairs_low,
        pairs_high=pairs_high,
        candidate_ratio=point_ratio,
        next_ratio=next_ratio,
        calibration_rounds=0 if spread is None or next_in_rounds else int(spread.size),
        next_in_rounds=next_in_rounds,
    )


def _interval(
    cand: Any,
    spread: Any,
    next_ratio: float,
    min_speedup: float,
    confidence: float,
    n_resamples: int,
    seed: int,
    in_rounds: bool = False,
) -> tuple[float | None, float | None, FsrMethod, float]:
    """(low, high, method, coverage) of the score; `spread` None takes `next_ratio` as exact."""
    if cand.size == 1:
        return None, None, "single", 0.0
    nxt = np.asarray([next_ratio]) if spread is None else spread
    if cand.size < MIN_BOOTSTRAP_PAIRS:
        # The score falls as the candidate ratio rises and (when positive) rises with t_{i+1}/t_i.
        low = float(_scored(cand.max(), nxt.min(), min_speedup))
        high = float(_scored(cand.min(), nxt.max(), min_speedup))
        if spread is None:
            coverage = range_coverage(cand.size)
        elif in_rounds:
            # Both ratios come from the same rounds, so they are not independent: the chance that
            # both ranges hold their medians is only bounded below (Bonferroni), not a product.
            coverage = max(0.0, range_coverage(cand.size) + range_coverage(nxt.size) - 1.0)
        else:
            coverage = range_coverage(cand.size) * range_coverage(nxt.size)
        return low, high, "range", coverage

    from scipy import stats

    def statistic(c: Any, *n: Any, axis: int = -1) -> Any:
        nr = np.median(n[0], axis=axis) if n else next_ratio
        return _scored(np.median(c, axis=axis), nr, min_speedup)

    ci = stats.bootstrap(
        (cand,) if spread is None else (cand, spread),
        statistic,
        n_resamples=n_resamples,
        vectorized=True,
        # Rounds are resampled whole when record i+1 ran in them: its ratio and the candidate's
        # share that round's record-i run.
        paired=in_rounds and spread is not None,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return float(ci.low), float(ci.high), "bootstrap", confidence


def need_another_pair(
    estimate: FsrEstimate,
    *,
    target_width: float,
    max_pairs: int,
    min_pairs: int = 2,
    confidence: float = 0.95,
) -> bool:
    """The confirmation's stopping rule: whether to run one more candidate/record-i pair.

    No once `max_pairs` are in (the cap: `--confirm-runs`). Otherwise yes while fewer than
    `min_pairs`, and while the part of the interval that pairs can narrow (`pairs_low` ..
    `pairs_high`: record i+1's calibration spread left out, since more pairs do not shrink it;
    all of it when record i+1 runs in the rounds too) is missing, covers less than `confidence`
    (a range of under six pairs does: see `estimate_fsr`), or is wider than `target_width` FSR.
    So with the defaults a confirmation stops at six pairs at the earliest, unless the cap is
    lower; a caller that accepts a range's coverage passes a lower `confidence` (0.85 lets four
    agreeing pairs stop it, or five rounds with record i+1 in them)."""
    if estimate.pairs >= max_pairs:
        return False
    width = estimate.pairs_width
    if estimate.pairs < min_pairs or width is None:
        return True
    return estimate.pairs_confidence < confidence or width > target_width


# ---- the speedrun's record rule ------------------------------------------------------------------------

RecordTest = Literal["t-test", "single-run", "zero-variance", "missing-run", "no-runs"]


class RecordVerdict(BaseModel):
    """Whether k runs of a candidate meet a validation-loss target by the modded-nanogpt rule."""

    schema_version: int = 1
    counts: bool
    #: Which test decided: the t-test, or the fallback that applied instead (see `record_rule`).
    test: RecordTest
    p_value: float | None
    mean: float | None
    std: float | None
    n: int
    target: float
    alpha: float

    def label(self) -> str:
        verdict = "counts" if self.counts else "does not count"
        if self.test == "t-test":
            return f"{verdict}: mean val loss {self.mean:.4f} over {self.n} runs, p={self.p_value:.4f} (< {self.alpha})"
        if self.test in ("single-run", "zero-variance"):
            return f"{verdict}: val loss {self.mean:.4f} vs target {self.target} ({self.test}, no t-test)"
        return f"{verdict}: {self.test}"


def record_rule(val_losses: Sequence[float | None], target: float, alpha: float = 0.01) -> RecordVerdict:
    """The modded-nanogpt record rule: a candidate counts when its runs show, with a one-sided
    one-sample t-test at p < `alpha` (0.01), that their mean validation loss is below `target`
    (scipy's `ttest_1samp(losses, target, alternative="less")`, as the speedrun's own records do).

    Where the t-test cannot apply, the choices are:
    - no runs (`no-runs`): does not count;
    - a run without a finite loss (None, NaN, inf: it crashed or diverged) (`missing-run`):
      does not count, since the rule wants every run;
    - one run (`single-run`): there is no spread to test, so the rule every single-seed
      evaluation already applies decides: it counts when its loss is at or below the target.
      `p_value` is None so that no one reads it as tested;
    - n runs with identical losses (`zero-variance`): the t statistic is undefined, and
      identical losses mean the runs did not differ (on the deterministic mini track, the same
      seed), so they weigh as one run: the single-run rule again, `p_value` None.
    """
    n = len(val_losses)
    base: dict[str, Any] = {"n": n, "target": target, "alpha": alpha}
    if n == 0:
        return RecordVerdict(counts=False, test="no-runs", p_value=None, mean=None, std=None, **base)
    if any(v is None or not math.isfinite(v) for v in val_losses):
        return RecordVerdict(counts=False, test="missing-run", p_value=None, mean=None, std=None, **base)
    losses = [float(v) for v in val_losses if v is not None]
    mean = statistics.fmean(losses)
    if n == 1 or max(losses) == min(losses):
        return RecordVerdict(
            counts=mean <= target,
            test="single-run" if n == 1 else "zero-variance",
            p_value=None,
            mean=mean,
            std=0.0 if n > 1 else None,
            **base,
        )
    from scipy import stats

    p = float(stats.ttest_1samp(losses, target, alternative="less").pvalue)
    return RecordVerdict(counts=p < alpha, test="t-test", p_value=p, mean=mean, std=statistics.stdev(losses), **base)


# ---- the benchmark score over tasks ------------------------------------------------------------------


class BenchmarkScore(BaseModel):
    """The mean FSR over tasks with a bootstrap confidence interval, and the IQM."""

    tasks: int
    mean: float
    ci_low: float | None
    ci_high: float | None
    iqm: float
    confidence: float = 0.95

    def label(self, unit: str = "task") -> str:
        """`mean FSR 0.911 (95% CI 0.803 – 1.071, IQM 0.888) over 9 tasks`."""
        ci = f"{self.confidence:.0%} CI {self.ci_low:.3f} – {self.ci_high:.3f}" if self.ci_low is not None else "no CI"
        units = unit if self.tasks == 1 else unit + "s"
        return f"mean FSR {self.mean:.3f} ({ci}, IQM {self.iqm:.3f}) over {self.tasks} {units}"


def iqm(values: Sequence[float] | np.ndarray[Any, Any]) -> float:
    """Interquartile mean: the mean of the middle half, scipy's `trim_mean(values, 0.25)`
    (floor(n/4) values cut from each end; rliable's definition). Less swayed than the mean by
    one task that scores 3.0 or one that fails."""
    from scipy import stats

    return float(stats.trim_mean(np.asarray(values, dtype=float), 0.25))


def benchmark_score(per_task: Sequence[float], confidence: float = 0.95, seed: int = BOOTSTRAP_SEED) -> BenchmarkScore:
    """Mean over tasks (one value per task: seeds averaged first) with a bootstrap CI over
    tasks (scipy's BCa; the percentile interval where BCa is degenerate) and the IQM. One
    task has no CI; tasks that all score the same have the zero-width CI of that value (a
    bootstrap of a constant)."""
    values = np.asarray(per_task, dtype=float)
    if values.size == 0:
        raise ValueError("no tasks to score")
    mean = float(values.mean())
    base = {"tasks": int(values.size), "mean": mean, "iqm": iqm(values), "confidence": confidence}
    if values.size == 1:
        return BenchmarkScore(ci_low=None, ci_high=None, **base)
    if float(values.max()) == float(values.min()):
        return BenchmarkScore(ci_low=mean, ci_high=mean, **base)
    import warnings

    from scipy import stats

    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # A degenerate BCa (its jackknife has no spread) warns and gives NaN: the percentile
            # interval is the fallback, so the warning says nothing the result does not.
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            ci = stats.bootstrap(
                (values,),
                np.mean,
                n_resamples=N_RESAMPLES,
                confidence_level=confidence,
                method=method,
                rng=np.random.default_rng(seed),
            ).confidence_interval
        if math.isfinite(ci.low) and math.isfinite(ci.high):
            break
    return BenchmarkScore(ci_low=float(ci.low), ci_high=float(ci.high), **base)
