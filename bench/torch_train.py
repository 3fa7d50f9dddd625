#!/usr/bin/env python3
"""PyTorch (CPU, fp32) baseline for Crucible's training-step benchmark.

Usage:
  /usr/bin/python3 bench/torch_train.py --config small|medium --threads T [--steps K] [--warmup W]
  /usr/bin/python3 bench/torch_train.py --model-config DIR/config.json --batch B --seq T ...
    (the architecture of a model folder, random weights: a step's time does not depend on them)

One training step = forward over a [B, T] batch (all sequences full length, causal mask),
mean cross-entropy over all B*T tokens, backward, AdamW step (lr 1e-4, weight decay 0.1),
zero_grad(set_to_none=True). W warm-up steps are untimed; the median of K timed steps is
reported as ONE JSON line on stdout.

The model is scripts/torch_qwen2.py (matmul + masked_fill + softmax attention, GQA through
repeat_interleave; torch 1.13 has no F.scaled_dot_product_attention).
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import torch_qwen2 as tq  # noqa: E402

CONFIGS = {
    "small": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                  intermediate_size=704, vocab_size=512, seq=256, batch=8),
    "medium": dict(hidden_size=896, num_hidden_layers=4, num_attention_heads=14, num_key_value_heads=2,
                   intermediate_size=4864, vocab_size=32768, seq=512, batch=2),
    # Qwen2.5-0.5B's full shape (src/cli/bench_shapes.h): tied embeddings.
    "qwen2.5-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, intermediate_size=4864, vocab_size=151936, seq=512,
                         batch=2, tie_word_embeddings=True),
}


def model_config(name):
    c = dict(CONFIGS[name])
    c.pop("seq")
    c.pop("batch")
    tied = c.pop("tie_word_embeddings", False)
    c.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"], rms_norm_eps=1e-6,
             rope_theta=1000000.0, tie_word_embeddings=tied, max_position_embeddings=32768)
    return c


def blas_libs():
    """Paths of BLAS libraries mapped into this process (call after a matmul has run)."""
    pat = re.compile(r"/lib[^/]*blas[^/]*\.so[^/]*$|/libopenblas[^/]*$|/libmkl_[^/]*\.so[^/]*$")
    found = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6:
                    path = parts[5]
                    if pat.search(path) and path not in found:
                        found.append(path)
    except OSError:
        pass
    out = []
    for p in found:
        real = os.path.realpath(p)
        out.append(p if real == p else "%s -> %s" % (p, real))
    return out


def main():
    ap = argparse.ArgumentParser(description="PyTorch baseline for the Crucible training benchmark")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="small")
    ap.add_argument("--model-config", help="a model folder's config.json instead of --config")
    ap.add_argument("--batch", type=int, default=2, help="with --model-config: sequences per step")
    ap.add_argument("--seq", type=int, default=512, help="with --model-config: tokens per sequence")
    ap.add_argument("--autocast-bf16", action="store_true",
                    help="forward under torch.autocast('cpu', bfloat16) (fp32 master weights)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        ap.error("need --steps >= 1, --warmup >= 0, --threads >= 1")

    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(args.seed)

    if args.model_config:
        with open(args.model_config) as f:
            cfg = json.load(f)
        B, T = args.batch, args.seq
    else:
        spec = CONFIGS[args.config]
        B, T = spec["batch"], spec["seq"]
        cfg = model_config(args.config)
    model = tq.init_weights(tq.Qwen2ForCausalLM(cfg), args.seed)
    model.train()
    n_params = tq.num_params(model)

    # Standard PyTorch AdamW: decay on everything, lr 1e-4, weight decay 0.1.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)

    g = torch.Generator()
    g.manual_seed(args.seed + 1)
    data = torch.randint(0, cfg["vocab_size"], (B, T + 1), generator=g)
    inputs, targets = data[:, :-1].contiguous(), data[:, 1:].contiguous()
    positions = torch.arange(T).unsqueeze(0).expand(B, T)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast_bf16):
            logits = model(inputs, positions)  # [B, T, V], causal mask, no padding
        loss = F.cross_entropy(logits.float().view(B * T, -1), targets.view(B * T))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(args.warmup):
        step()
    # Make sure a BLAS matmul has run before inspecting the mapped libraries.
    torch.mm(torch.randn(64, 64), torch.randn(64, 64))
    blas = blas_libs()
    primary = next((b for b in blas if "openblas" in os.path.basename(b.split(" -> ")[0])), blas[0] if blas else None)

    times = []
    last_loss = None
    for _ in range(args.steps):
        t0 = time.perf_counter()
        last_loss = step()
        times.append(time.perf_counter() - t0)

    med = statistics.median(times)
    print(json.dumps({
        "config": args.model_config or args.config,
        "dtype": "autocast bf16" if args.autocast_bf16 else "fp32",
        "threads": args.threads,
        "tokens_per_step": B * T,
        "step_s_median": med,
        "tokens_per_s": B * T / med,
        "torch_version": torch.__version__,
        "blas": primary,
        "blas_libs": blas,
        "params": n_params,
        "steps": args.steps,
        "warmup": args.warmup,
        "step_s_all": times,
        "final_loss": last_loss,
    }))


if __name__ == "__main__":
    main()
