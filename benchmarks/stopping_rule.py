"""Simulate the confirmation's stopping rule on the oracle, under a stated timing noise.

The oracle's node is record i+1's code, so its true paired ratio t'/t_i equals record i+1's
t_{i+1}/t_i and its true FSR is 1. Each simulated confirmation draws paired log-ratios with
sd `--pair-sd`, a calibration of `--rounds` rounds with the same noise, and adds pairs until
`harness.scoring.need_another_pair` says stop; the table says how often the FSR lands in
[0.8, 1.2], how many pairs that took and how wide the final interval was.

    python benchmarks/stopping_rule.py                          # mini-8 (t_9/t_8 0.816), sd 3.5%
    python benchmarks/stopping_rule.py --next-ratio 0.753 --rounds 5

The default noise, 3.5% per paired ratio, is inferred from the mini track's oracle check
(records/mini/README.md): one pair against a calibrated ratio strayed by 4.4% RMS over the
nine tasks, i.e. about 3.5-3.7% for a pair once a three-round calibration's own error is taken out.
Figures from here describe the rule under that model, not a measurement.
"""

from __future__ import annotations

import argparse

import numpy as np

from harness.scoring import estimate_fsr, need_another_pair


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--next-ratio", type=float, default=0.816, help="true t_{i+1}/t_i (mini-8: 0.816)")
    ap.add_argument("--pair-sd", type=float, default=0.035, help="sd of one paired log-ratio")
    ap.add_argument("--rounds", type=int, default=3, help="calibration rounds of record i+1")
    ap.add_argument("--min-speedup", type=float, default=0.05, help="the track's noise margin")
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"t_i+1/t_i {args.next_ratio}, pair sd {args.pair_sd:.1%}, {args.rounds} calibration rounds")
    print("| target width | cap | confidence | P(FSR in [0.8, 1.2]) | mean pairs | median final width |")
    print("|---:|---:|---:|---:|---:|---:|")
    for width, cap, conf in [(0.3, 6, 0.95), (0.3, 10, 0.95), (0.2, 10, 0.95), (0.3, 4, 0.8)]:
        inside, used, widths = 0, [], []
        for _ in range(args.trials):
            cal = args.next_ratio * np.exp(rng.normal(0, args.pair_sd, args.rounds))
            pairs: list[float] = []
            while True:
                pairs.append(float(args.next_ratio * np.exp(rng.normal(0, args.pair_sd))))
                est = estimate_fsr(
                    pairs, float(np.median(cal)), next_ratios=list(cal), min_speedup=args.min_speedup, n_resamples=999
                )
                if not need_another_pair(est, target_width=width, max_pairs=cap, confidence=conf):
                    break
            inside += 0.8 <= est.fsr <= 1.2
            used.append(est.pairs)
            widths.append(est.width if est.width is not None else float("nan"))
        print(
            f"| {width} | {cap} | {conf} | {inside / args.trials:.2f} | {np.mean(used):.1f} | "
            f"{np.nanmedian(widths):.2f} |"
        )


if __name__ == "__main__":
    main()
