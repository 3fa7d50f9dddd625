#!/usr/bin/env python3
"""Data-parallel SFT on this machine: N ranks x T threads against 1 rank x N*T threads.

Runs `crucible train sft` on the built-in task twice per shape — once alone with all the cores'
threads, once under `mpirun -np N` with the cores split between the ranks — alternating the
two, and prints per shape the median tokens/s of each (the first steps skipped), the
communication time per step and the bytes each step's all-reduce moved (metrics.jsonl's
`comm_s` and `comm_bytes_sent`, summed over ranks). The same global batch either way.

Usage: python3 bench/dp_sft_bench.py --binary build/crucible [--ranks 2] [--threads 1]
       [--steps 30] [--runs 2] [--workdir /tmp/dpbench]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess

SHAPES = {
    # the default ~1.6M model
    "default (1.6M)": [],
    # 8 layers 512 wide, ~23M parameters (the byte vocabulary)
    "512 x 8 (23M)": ["model.arch.hidden_size=512", "model.arch.intermediate_size=1408",
                      "model.arch.num_hidden_layers=8", "model.arch.num_attention_heads=8",
                      "model.arch.num_key_value_heads=2"],
}


def run(binary, workdir, name, sets, ranks, threads, steps):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="passive",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    args = [binary, "train", "sft", "--set", f"run.dir={workdir}", "--set", f"run.name={name}",
            "--set", f"train.steps={steps}", "--set", "train.batch_size=32", "--set",
            "train.grad_accum=2", "--set", "train.eval_every=0", "--set", "train.eval_generate=0",
            "--set", "train.checkpoint_every=0", "--set", "train.log_every=1000", "--set",
            "data.builtin_eval_examples=8"]
    for s in sets:
        args += ["--set", s]
    if ranks > 1:
        args = ["mpirun", "--oversubscribe", "-np", str(ranks)] + args
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL)
    lines = [json.loads(l) for l in open(os.path.join(workdir, name, "metrics.jsonl"))]
    body = lines[3:]  # the first steps warm up
    return {
        "tokens_per_s": statistics.median(l["tokens_per_s"] for l in body),
        "step_s": statistics.median(l["step_s"] for l in body),
        "comm_s": statistics.median(l.get("comm_s", 0.0) for l in body),
        "comm_bytes": statistics.median(l.get("comm_bytes_sent", 0.0) for l in body),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/crucible")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per rank")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/dpbench")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    total = a.ranks * a.threads
    print(f"| shape | run | 1 rank x {total} threads tok/s | {a.ranks} ranks x {a.threads} "
          f"threads tok/s | ratio | comm s/step (of step s) | bytes sent/step (rank 0) |")
    print("|---|---|---|---|---|---|---|")
    for shape, sets in SHAPES.items():
        for r in range(a.runs):
            one = run(a.binary, a.workdir, "one", sets, 1, total, a.steps)
            dp = run(a.binary, a.workdir, "dp", sets, a.ranks, a.threads, a.steps)
            print(f"| {shape} | {r + 1} | {one['tokens_per_s']:.0f} | {dp['tokens_per_s']:.0f} | "
                  f"{dp['tokens_per_s'] / one['tokens_per_s']:.2f}x | {dp['comm_s']:.4f} "
                  f"({dp['step_s']:.3f}) | {dp['comm_bytes'] / 1e6:.1f} MB |", flush=True)


if __name__ == "__main__":
    main()
