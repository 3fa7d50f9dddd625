#!/usr/bin/env python3
"""`crucible experiment run` alone against the same experiment under mpirun, on this machine.

Three ways to run bench/experiment_sharding.yaml (4 runs) from scratch, one after another, each
`--rounds` times (alternating): alone with --threads x --ranks OpenMP threads; `mpirun -np
--ranks` with one run per rank (--ranks-per-run 1) and --threads threads each; and every rank on
every run (--ranks-per-run --ranks, data-parallel). Prints each way's wall seconds (median) and
its ratio to alone, and writes --json. With one thread per rank the two sharded ways must give
the same results.json (timings aside): the script checks it.

Usage: python3 bench/experiment_sharding.py --binary build/crucible [--ranks 2] [--threads 1]
       [--rounds 1] [--workdir /tmp/expshard] [--json bench/results/experiment_sharding.json]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import time

SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiment_sharding.yaml")


def results_without_times(out):
    with open(os.path.join(out, "results.json")) as f:
        r = json.load(f)
    for arm in r["arms"]:
        for run in arm["runs"]:
            run.pop("train_seconds", None)
            run.pop("eval_seconds", None)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/crucible")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/expshard")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    binary = os.path.abspath(a.binary)
    base_env = dict(os.environ, OMP_WAIT_POLICY="passive", OMPI_ALLOW_RUN_AS_ROOT="1",
                    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    mpirun = ["mpirun", "-np", str(a.ranks)]
    ways = {
        f"alone ({a.ranks * a.threads} threads)":
            ([], [], a.ranks * a.threads),
        f"mpirun -np {a.ranks}, one run per rank":
            (mpirun, ["--ranks-per-run", "1"], a.threads),
        f"mpirun -np {a.ranks}, every rank on every run":
            (mpirun, ["--ranks-per-run", str(a.ranks)], a.threads),
    }
    seconds = {w: [] for w in ways}
    outs = {}
    for r in range(a.rounds):
        for w, (launcher, extra, threads) in ways.items():
            out = os.path.join(a.workdir, f"{len(outs) % len(ways)}-{r}")
            shutil.rmtree(out, ignore_errors=True)
            env = dict(base_env, OMP_NUM_THREADS=str(threads))
            cmd = launcher + [binary, "experiment", "run", "--spec", SPEC, "--out", out] + extra
            t0 = time.monotonic()
            p = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
            seconds[w].append(time.monotonic() - t0)
            outs[w] = out
            print(f"round {r + 1}: {w}: {seconds[w][-1]:.1f} s", flush=True)
    names = list(ways)
    alone = statistics.median(seconds[names[0]])
    rows = []
    for w in names:
        med = statistics.median(seconds[w])
        rows.append({"way": w, "seconds": seconds[w], "median_s": med,
                     "speedup_vs_alone": alone / med})
        print(f"{w:45s} {med:7.1f} s  {alone / med:5.2f}x alone")
    same = results_without_times(outs[names[1]]) == results_without_times(outs[names[2]])
    print("the two sharded ways' results.json equal (timings aside):", same)
    summary = {"spec": "bench/experiment_sharding.yaml", "ranks": a.ranks,
               "threads_per_rank": a.threads, "cores": os.cpu_count(), "rounds": a.rounds,
               "ways": rows, "sharded_results_equal": same}
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    if a.threads == 1 and not same:
        raise SystemExit("the sharded results differ")


if __name__ == "__main__":
    main()
