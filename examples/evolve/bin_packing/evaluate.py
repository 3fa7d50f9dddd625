# Evaluator for online bin packing: compiles the candidate with g++, runs it on every instance
# of data/DATASET.json (stdin "capacity n items..."), and checks its answer itself: one bin per
# item, no bin over capacity. Bins = distinct bins used. L1 bound = ceil(sum / capacity).
# Prints {"combined_score": -(mean bins - mean L1) / mean L1, "<dataset>_mean_bins": ...}.
import json
import math
import os
import subprocess
import sys


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def main():
    program, dataset = sys.argv[1], sys.argv[2]
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "data", dataset + ".json")) as f:
        instances = json.load(f)["instances"]
    exe = os.path.join(os.getcwd(), "candidate")
    if not os.path.exists(exe):  # each stage starts in a fresh scratch, so each compiles
        r = subprocess.run(["g++", "-O2", "-std=c++17", "-o", exe, program],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail("compilation failed:\n" + r.stderr[-2000:])
    bins, bounds = [], []
    for name in sorted(instances):
        inst = instances[name]
        cap, items = inst["capacity"], inst["items"]
        stdin = f"{cap} {len(items)}\n" + " ".join(map(str, items)) + "\n"
        r = subprocess.run([exe], input=stdin, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            fail(f"{name}: the program exited with status {r.returncode}: {r.stderr[-500:]}")
        try:
            assign = [int(t) for t in r.stdout.split()]
        except ValueError:
            fail(f"{name}: the output is not a list of bin indices")
        if len(assign) != len(items):
            fail(f"{name}: {len(assign)} bin indices for {len(items)} items")
        load = {}
        for item, b in zip(items, assign):
            if b < 0 or b >= len(items):
                fail(f"{name}: bin index {b} out of range")
            load[b] = load.get(b, 0) + item
            if load[b] > cap:
                fail(f"{name}: bin {b} holds {load[b]} > capacity {cap}")
        bins.append(len(load))
        bounds.append(math.ceil(sum(items) / cap))
    mean_bins = sum(bins) / len(bins)
    mean_lb = sum(bounds) / len(bounds)
    excess = (mean_bins - mean_lb) / mean_lb
    print(json.dumps({"combined_score": -excess, f"{dataset}_mean_bins": mean_bins,
                      f"{dataset}_l1_bound": mean_lb, f"{dataset}_excess_percent": 100 * excess}))


if __name__ == "__main__":
    main()
