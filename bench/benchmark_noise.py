#!/usr/bin/env python3
"""Benchmark noise, measured by resampling two checkpoints' held-out samples.

Given two runs' evaluations on the same items (`experiment_eval.json` files written by
`crucible experiment`: scores[item][sample] in 0/1), this answers by resampling, not by formula:
  1. how often a benchmark of n items (n = 30 by default: a typical small reasoning benchmark)
     drawn from the full set ranks the two checkpoints the other way round than the full set;
  2. the power of a paired t-test (two-sided, alpha 0.05) at n items and K samples per item, for
     the full set's difference taken as the true one: items drawn with replacement from the
     full set, K samples drawn without replacement from each item's samples;
and sets the items needed for 80% power against Miller's formula that `crucible compare` prints
(eval/statistics.h, items_needed: n = z^2 (omega2 + sigma2_a/K + sigma2_b/K) / delta^2 with
z = 1.959964 + 0.841621, the variance components from the same estimators).

Usage: benchmark_noise.py A/experiment_eval.json B/experiment_eval.json [--resamples 4000]
       [--seed 0] [--json OUT]
Python 3 standard library only.
"""

import argparse
import json
import math
import random
import sys

Z = 1.959964 + 0.841621


def load(path):
    with open(path) as f:
        e = json.load(f)
    return e["item_ids"], [[float(v) for v in row] for row in e["scores"]]


def mean(v):
    return sum(v) / len(v)


def var(v):
    m = mean(v)
    return sum((x - m) ** 2 for x in v) / (len(v) - 1)


def t_crit(df):
    # two-sided 5% critical values of Student's t (df >= 1); beyond the table, normal-ish.
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
             9: 2.262, 10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 29: 2.045,
             30: 2.042, 40: 2.021, 50: 2.009, 60: 2.000, 80: 1.990, 100: 1.984, 120: 1.980,
             200: 1.972, 400: 1.966}
    keys = sorted(table)
    if df in table:
        return table[df]
    for lo, hi in zip(keys, keys[1:]):
        if lo < df < hi:  # interpolate in 1/df
            w = (1 / df - 1 / hi) / (1 / lo - 1 / hi)
            return table[hi] + w * (table[lo] - table[hi])
    return 1.959964


def paired_significant(da):
    n = len(da)
    m = mean(da)
    v = var(da)
    if v == 0:
        return m != 0
    return abs(m) / math.sqrt(v / n) > t_crit(n - 1)


def power_inputs(a, b, k):
    """Miller's variance components as eval/statistics.cpp estimates them, at K = k."""
    def within(rows):
        vs = [var(r) for r in rows if len(r) >= 2]
        return mean(vs) if vs else 0.0
    sa, sb = within(a), within(b)
    d = [mean(x) - mean(y) for x, y in zip(a, b)]
    omega2 = max(0.0, var(d) - sa / len(a[0]) - sb / len(b[0]))
    return omega2, sa, sb


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--resamples", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--subset", type=int, default=30)
    ap.add_argument("--json")
    o = ap.parse_args()
    ids_a, a = load(o.a)
    ids_b, b = load(o.b)
    if ids_a != ids_b:
        sys.exit("the two evaluations are not on the same items")
    n_full, K = len(a), len(a[0])
    full = mean([mean(r) for r in a]) - mean([mean(r) for r in b])
    rng = random.Random(o.seed)
    out = {"items": n_full, "samples": K, "accuracy_a": mean([mean(r) for r in a]),
           "accuracy_b": mean([mean(r) for r in b]), "difference": full}
    print(f"A {100 * out['accuracy_a']:.2f}  B {100 * out['accuracy_b']:.2f}  "
          f"A - B {100 * full:+.2f} points on {n_full} items x {K} samples")

    # 1. ranking reversals on n-item subsets (without replacement: a smaller benchmark)
    rev = 0
    ties = 0
    for _ in range(o.resamples):
        idx = rng.sample(range(n_full), o.subset)
        d = mean([mean(a[i]) - mean(b[i]) for i in idx])
        if d == 0:
            ties += 1
        elif (d > 0) != (full > 0):
            rev += 1
    out["subset"] = {"items": o.subset, "reversed": rev / o.resamples, "tied": ties / o.resamples}
    print(f"{o.subset}-item subsets: the ranking reversed in {100 * rev / o.resamples:.1f}% "
          f"and tied in {100 * ties / o.resamples:.1f}% of {o.resamples}")

    # 2. power by resampling at n items x k samples, and the formula's items for 80% power
    out["power"] = []
    for k in sorted({1, 2, 4, K}):
        omega2, sa, sb = power_inputs(a, b, k)
        total = omega2 + sa / k + sb / k
        n80 = math.ceil(Z * Z * total / (full * full)) if full != 0 else math.inf
        row = {"samples": k, "formula_items_for_80": n80, "power": {}}
        for n in (30, 100, 200, 400, 800):
            hits = 0
            reps = max(500, o.resamples // 4)
            for _ in range(reps):
                da = []
                for _ in range(n):
                    i = rng.randrange(n_full)
                    da.append(mean(rng.sample(a[i], k)) - mean(rng.sample(b[i], k)))
                hits += paired_significant(da)
            row["power"][n] = hits / reps
        # the smallest n of the grid with power >= 0.8 by resampling
        grid = [n for n, p in row["power"].items() if p >= 0.8]
        row["resampled_items_for_80_on_grid"] = min(grid) if grid else None
        out["power"].append(row)
        print(f"K={k}: power " + ", ".join(f"n={n} {100 * p:.0f}%" for n, p in row["power"].items())
              + f" | formula: {n80} items for 80%")
    if o.json:
        with open(o.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
