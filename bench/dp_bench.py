#!/usr/bin/env python3
"""Crucible under mpirun on this machine: N ranks x T threads against 1 rank x N*T threads.

SFT: `crucible train sft` on the built-in task per shape, alone with all the cores' threads and
under `mpirun -np N` with the cores split between the ranks, alternating; the median tokens/s
of each (the first steps skipped), the communication time per step and the bytes rank 0 sent
(metrics.jsonl's `comm_s` and `comm_bytes_sent`). The same global batch either way.
RL (--rl): `crucible train rl` (8 groups of 8, up to 64 new tokens) from the 512 x 8 shape after
one SFT step, the step's generate / reward / train seconds (medians of steps 2-5). Eval
(--eval): `crucible eval` of that model, 128 items x 8 samples of up to 64 tokens, samples/s of
the whole command (model load and launcher included).

Usage: python3 bench/dp_bench.py --binary build/crucible [--ranks 2] [--threads 1]
       [--steps 30] [--runs 2] [--workdir /tmp/dpbench] [--no-sft] [--rl] [--eval]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import time

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


def env_for(threads):
    return dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_WAIT_POLICY="passive",
                OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def launcher(ranks):
    return ["mpirun", "--oversubscribe", "-np", str(ranks)] if ranks > 1 else []


def base_model(binary, workdir):
    """The 512 x 8 shape after one SFT step: nearly random, so its answers run to the token
    limit and generation is a real share of the work."""
    ckpt = os.path.join(workdir, "base", "checkpoints", "step-1")
    if not os.path.isdir(ckpt):
        shutil.rmtree(os.path.join(workdir, "base"), ignore_errors=True)
        args = [binary, "train", "sft", "--set", f"run.dir={workdir}", "--set", "run.name=base",
                "--set", "train.steps=1", "--set", "train.eval_every=0", "--set",
                "train.checkpoint_every=0"]
        for kv in SHAPES["512 x 8 (23M)"]:
            args += ["--set", kv]
        subprocess.run(args, env=env_for(2), check=True, stdout=subprocess.DEVNULL)
    return ckpt


def run_rl(binary, workdir, model, ranks, threads, steps):
    name = "rl"
    shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    args = launcher(ranks) + [binary, "train", "rl", "--set", f"model.path={model}", "--set",
                              f"run.dir={workdir}", "--set", f"run.name={name}", "--set",
                              f"train.steps={steps}", "--set", "train.eval_every=0", "--set",
                              "train.eval_problems=0", "--set", "train.checkpoint_every=0",
                              "--set", "rollout.prompts_per_step=8", "--set",
                              "rollout.samples_per_prompt=8", "--set",
                              "rollout.max_new_tokens=64", "--set",
                              "algorithm.dynamic_sampling=false", "--set",
                              "train.micro_batch_tokens=2048"]
    subprocess.run(args, env=env_for(threads), check=True, stdout=subprocess.DEVNULL)
    lines = [json.loads(l) for l in open(os.path.join(workdir, name, "metrics.jsonl"))][1:]
    return {k: statistics.median(l[k] for l in lines)
            for k in ("time_generate_s", "time_reward_s", "time_train_s", "step_s")}


def run_eval(binary, workdir, model, ranks, threads):
    out = os.path.join(workdir, "eval")
    shutil.rmtree(out, ignore_errors=True)
    data = os.path.join(workdir, "items.jsonl")
    with open(data, "w") as f:
        for i in range(128):
            f.write(json.dumps({"id": f"a{i}", "prompt": f"{i} + {i % 7} =",
                                "answer": str(i + i % 7)}) + "\n")
    args = launcher(ranks) + [binary, "eval", "--model", model, "--data", data, "--n", "8",
                              "--max-tokens", "64", "--raw", "--out", out]
    t0 = time.time()
    subprocess.run(args, env=env_for(threads), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return 1024 / (time.time() - t0)  # wall time, model load and launcher included


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/crucible")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="threads per rank")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--workdir", default="/tmp/dpbench")
    ap.add_argument("--no-sft", action="store_true")
    ap.add_argument("--rl", action="store_true")
    ap.add_argument("--eval", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.workdir, exist_ok=True)
    total = a.ranks * a.threads
    if a.rl or a.eval:
        model = base_model(a.binary, a.workdir)
    if a.rl:
        print(f"| RL run | ranks x threads | generate s | reward s | train s | step s |")
        print("|---|---|---|---|---|---|")
        for r in range(a.runs):
            for ranks, threads in ((1, total), (a.ranks, a.threads)):
                t = run_rl(a.binary, a.workdir, model, ranks, threads, 5)
                print(f"| {r + 1} | {ranks} x {threads} | {t['time_generate_s']:.2f} | "
                      f"{t['time_reward_s']:.3f} | {t['time_train_s']:.2f} | {t['step_s']:.2f} |",
                      flush=True)
    if a.eval:
        print("| eval run | 1 x %d samples/s | %d x %d samples/s | ratio |" % (total, a.ranks,
                                                                            a.threads))
        print("|---|---|---|---|")
        for r in range(a.runs):
            one = run_eval(a.binary, a.workdir, model, 1, total)
            dp = run_eval(a.binary, a.workdir, model, a.ranks, a.threads)
            print(f"| {r + 1} | {one:.1f} | {dp:.1f} | {dp / one:.2f}x |", flush=True)
    if a.no_sft:
        return
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
