#!/usr/bin/env python3
"""Crucible's decode throughput beside llama.cpp's on the same weights (issue 4, item 6).

    python3 bench/llamacpp_bench.py --binary build/crucible [--threads N] [--runs 3]
        [--prompt-tokens 32] [--new-tokens 32] [--sequences 32] [--model DIR] [--dtype bf16]

With --dtype bf16 both sides run the weights in bfloat16: the GGUF is exported as BF16 and
crucible runs with `--dtype bfloat16` (default f32: an F32 GGUF, crucible's fp32).

With --model DIR, any model folder replaces the "medium" bench model in steps 1-4 (a random
folder of Qwen2.5-0.5B's shape: `crucible bench generate --save-model DIR --configs
qwen2.5-0.5b`); the greedy check's prompt ids are bytes, valid ids in every vocabulary here.

Builds nothing. With the crucible binary given it:
1. writes the "medium" bench model (src/cli/bench_shapes.h: Qwen2, hidden 896, 4 layers, vocab
   32768, random weights of seed 7, byte tokenizer files) with
   `crucible bench generate --configs medium --save-model DIR`;
2. exports it with `crucible convert --to gguf --type f32`;
3. checks that both engines compute the same model: the greedy continuation of one prompt by
   `crucible generate` (on the folder) and by llama.cpp (on the GGUF);
4. --runs times, alternating: crucible's decode tokens/s at batch 1 and --sequences
   (`crucible bench generate --configs medium --decode-only`, the same seed-7 weights), then
   llama.cpp's single-stream and --sequences-sequence decode tokens/s (bench/llamacpp/bench.mjs:
   node-llama-cpp 3.21.1's prebuilt CPU build, one context with that many sequences);
5. prints every run, the medians and the ratios crucible / llama.cpp against the issues'
   targets (f32: single stream >= 0.9x, 32 sequences >= 2x; bf16: >= 1.0x and >= 3x).

Both sides: OMP_NUM_THREADS = --threads (and llama.cpp's thread count), greedy, prompts of
--prompt-tokens random token ids, --new-tokens new tokens per sequence, the prompt's prefill
and its first token taken out of the timing, best of 2 runs at batch <= 8 and one above.
Needs `npm ci --prefix bench/llamacpp --omit=optional --ignore-scripts` (scripts/setup does it).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_BENCH = os.path.join(HERE, "llamacpp", "bench.mjs")
# Issue 4's targets for fp32; issue 17's for bf16 (against llama.cpp's BF16 on the same weights).
TARGETS = {"f32": (0.9, 2.0), "bf16": (1.0, 3.0)}


def run(cmd, env, what):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"llamacpp_bench: {what} failed ({r.returncode}): {' '.join(cmd)}\n"
                 f"{r.stdout[-2000:]}{r.stderr[-4000:]}")
    return r.stdout


def last_json(text):
    """The JSON object that ends `text` (the commands print it last)."""
    start = text.rfind("\n{")
    return json.loads(text[start + 1 if start >= 0 else text.index("{"):])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True, help="the crucible binary")
    ap.add_argument("--threads", type=int,
                    default=int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--sequences", type=int, default=32)
    ap.add_argument("--check-tokens", type=int, default=16)
    ap.add_argument("--workdir", help="keep the model and GGUF here (default: a temp folder)")
    ap.add_argument("--model", help="a model folder instead of the medium bench model")
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32",
                    help="the GGUF's matrices and crucible's --dtype (bf16: bfloat16)")
    args = ap.parse_args()
    TARGET_SINGLE, TARGET_BATCH = TARGETS[args.dtype]

    binary = os.path.abspath(args.binary)
    if not os.path.exists(os.path.join(HERE, "llamacpp", "node_modules", "node-llama-cpp")):
        sys.exit("llamacpp_bench: node-llama-cpp is not installed; run scripts/setup or\n"
                 "  npm ci --prefix bench/llamacpp --omit=optional --ignore-scripts")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    ours_dtype = ["--dtype", "bfloat16" if args.dtype == "bf16" else "float32"]
    load_before = os.getloadavg()
    print("load average before: %.2f %.2f %.2f" % load_before)
    work = args.workdir or tempfile.mkdtemp(prefix="llamacpp_bench_")
    os.makedirs(work, exist_ok=True)
    try:
        if args.model:
            model_dir = os.path.abspath(args.model)
            gguf = os.path.join(work, os.path.basename(model_dir.rstrip("/")) +
                                f"-{args.dtype}.gguf")
            which, key = ["--model", model_dir], "model"
        else:
            model_dir = os.path.join(work, "medium")
            gguf = os.path.join(work, f"medium-{args.dtype}.gguf")
            which, key = ["--configs", "medium"], "medium"
            run([binary, "bench", "generate", "--configs", "medium", "--save-model", work], env,
                "saving the medium model")
        print(run([binary, "convert", "--to", "gguf", "--type", args.dtype, model_dir, gguf], env,
                  "GGUF export").strip())

        # 3. Same model on both sides: greedy continuation of one byte-tokenizer prompt.
        prompt = list("The quick brown fox jumps over the lazy dog.".encode())
        src, out = os.path.join(work, "check.jsonl"), os.path.join(work, "check_out.jsonl")
        with open(src, "w") as f:
            f.write(json.dumps({"prompt_ids": prompt}) + "\n")
        run([binary, "generate", "--model", model_dir, "--in", src, "--out", out,
             "--temperature", "0", "--max-tokens", str(args.check_tokens)] + ours_dtype, env,
            "crucible generate (greedy check)")
        with open(out) as f:
            greedy = json.loads(f.readline())["completion_ids"]
        theirs = last_json(run(["node", NODE_BENCH, "--model", gguf, "--threads",
                                str(args.threads), "--sequences", "", "--check-prompt",
                                ",".join(map(str, prompt)), "--check-tokens",
                                str(args.check_tokens)], env, "llama.cpp greedy check"))
        theirs_ids = theirs["check_completion_ids"][:len(greedy)]
        same = sum(1 for _ in iter_prefix(greedy, theirs_ids))
        print(f"greedy check ({len(prompt)}-token prompt): crucible  {greedy}\n"
              f"                               llama.cpp {theirs_ids}\n"
              f"  first {same} of {len(greedy)} tokens identical")

        # 4. Alternate the two engines, --runs times.
        B = args.sequences
        rows = []
        for r in range(args.runs):
            ours = last_json(run([binary, "bench", "generate"] + which +
                                 ["--decode-only", "--json", "--batches", f"1,{B}",
                                  "--prompt-tokens", str(args.prompt_tokens),
                                  "--new-tokens", str(args.new_tokens)] + ours_dtype, env,
                                 "crucible bench"))
            theirs = last_json(run(["node", NODE_BENCH, "--model", gguf, "--threads",
                                    str(args.threads), "--sequences", f"1,{B}",
                                    "--prompt-tokens", str(args.prompt_tokens),
                                    "--new-tokens", str(args.new_tokens)], env, "llama.cpp bench"))
            row = {"crucible_1": ours[key]["decode_tokens_per_s_batch_1"],
                   "crucible_B": ours[key][f"decode_tokens_per_s_batch_{B}"],
                   "llama_1": theirs["decode_tokens_per_s_seqs_1"],
                   "llama_B": theirs[f"decode_tokens_per_s_seqs_{B}"]}
            rows.append(row)
            if r == 0:
                print(f"threads {args.threads} (crucible OpenMP {ours['threads']}, llama.cpp "
                      f"{theirs['threads_used_seqs_1']}) | {theirs['llama_cpp']} | "
                      f"{args.prompt_tokens}-token prompts, {args.new_tokens} new tokens, greedy")
            print(f"run {r + 1}: single stream crucible {row['crucible_1']:8.1f} | llama.cpp "
                  f"{row['llama_1']:8.1f} tok/s | {row['crucible_1'] / row['llama_1']:.2f}x   "
                  f"{B} sequences crucible {row['crucible_B']:8.1f} | llama.cpp "
                  f"{row['llama_B']:8.1f} tok/s | {row['crucible_B'] / row['llama_B']:.2f}x",
                  flush=True)

        med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        r1, rB = med["crucible_1"] / med["llama_1"], med["crucible_B"] / med["llama_B"]
        print(f"median of {len(rows)}:")
        print(f"  single stream: crucible {med['crucible_1']:.1f} tok/s, llama.cpp "
              f"{med['llama_1']:.1f} tok/s, ratio {r1:.2f}x (target >= {TARGET_SINGLE}x: "
              f"{'met' if r1 >= TARGET_SINGLE else 'NOT met'})")
        print(f"  {B} sequences:  crucible {med['crucible_B']:.1f} tok/s, llama.cpp "
              f"{med['llama_B']:.1f} tok/s, ratio {rB:.2f}x (target >= {TARGET_BATCH}x: "
              f"{'met' if rB >= TARGET_BATCH else 'NOT met'})")
        load_after = os.getloadavg()
        print("load average after: %.2f %.2f %.2f" % load_after)
        print(json.dumps({"dtype": args.dtype, "threads": args.threads, "load_before": load_before,
                          "load_after": load_after, "runs": rows, "median": med,
                          "ratio_single": r1, f"ratio_{B}": rB, "greedy_same_tokens": same,
                          "greedy_tokens": len(greedy)}))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def iter_prefix(a, b):
    for x, y in zip(a, b):
        if x != y:
            return
        yield x


if __name__ == "__main__":
    main()
