#!/usr/bin/env python3
"""Projects data-parallel SFT to 8, 64 and 512 ranks on 10/25/100 Gb/s links.

The model of one step (docs/SCALING.md): every rank computes the gradient of its micro-batch
(6 x params x tokens FLOPs at the rate it reaches alone), then the gradients are summed in rank
order (src/dist/world.cpp): a pipelined chain of 1 MiB chunks through the ranks, then a
broadcast of the sums from the last rank. Nothing overlaps the backward yet, so

    t_step = t_compute + t_comm
    t_compute = 6 * P * (global_tokens / N) / flops_per_rank  (the global batch is the config's)
    t_comm = 2 * B / bw + (N - 1) * (chunk / bw + latency)   (N > 1; B = 4 * P bytes)

(the chain streams B once; Open MPI's pipelined broadcast streams it about once more; the
first chunk needs N - 1 hops before the pipeline is full). A ring all-reduce would cost
2 (N - 1) / N * B / bw + 2 (N - 1) * latency, but sums each element in a different order per
rank count; the chain gives the same bits for any N.

The global batch stays the config's whatever N is, so each rank's share shrinks as 1/N while
the all-reduce does not: that, and a rank needing at least one whole sequence, is where it stops.

Usage: python3 bench/scaling_projection.py [--flops 1.7e11] [--seqs 512] [--seq-len 512]
"""
import argparse


def params(hidden, layers, heads, kv_heads, inter, vocab, tied=True):
    head_dim = hidden // heads
    q, kv = hidden, kv_heads * head_dim
    attn = hidden * q + q + 2 * (hidden * kv + kv) + q * hidden
    mlp = 3 * hidden * inter
    per_layer = attn + mlp + 2 * hidden
    embed = vocab * hidden * (1 if tied else 2)
    return layers * per_layer + embed + hidden


SHAPES = {
    "medium": params(896, 4, 14, 2, 4864, 32768),
    "0.5B (Qwen2.5-0.5B)": 494_032_768,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--flops", type=float, default=1.7e11,
                    help="FLOP/s one rank reaches in training (fp32 on 2 cores here: 170 GFLOP/s)")
    ap.add_argument("--seqs", type=int, default=512, help="sequences in the global batch")
    ap.add_argument("--seq-len", type=int, default=512, help="tokens per sequence")
    ap.add_argument("--latency", type=float, default=5e-6, help="seconds per message")
    ap.add_argument("--chunk", type=float, default=2**20, help="bytes per chain message")
    a = ap.parse_args()
    tokens = a.seqs * a.seq_len
    print(f"global batch {a.seqs} x {a.seq_len} = {tokens} tokens a step; a rank computes at "
          f"{a.flops / 1e9:.0f} GFLOP/s; latency {a.latency * 1e6:.0f} us; chunk "
          f"{a.chunk / 2**20:.0f} MiB")
    print("| model | link | ranks | tokens per rank | compute s | all-reduce s | efficiency |")
    print("|---|---|---|---|---|---|---|")
    for name, p in SHAPES.items():
        b = 4 * p
        for gbps in (10, 25, 100):
            bw = gbps * 1e9 / 8
            for n in (1, 8, 64, 512):
                if n > a.seqs:
                    print(f"| {name} ({p / 1e6:.0f}M) | {gbps} Gb/s | {n} | — | — | — | impossible: fewer "
                          f"sequences ({a.seqs}) than ranks |")
                    continue
                compute = 6 * p * tokens / n / a.flops
                comm = 0.0 if n == 1 else 2 * b / bw + (n - 1) * (a.chunk / bw + a.latency)
                eff = compute / (compute + comm)
                print(f"| {name} ({p / 1e6:.0f}M) | {gbps} Gb/s | {n} | {tokens // n} | "
                      f"{compute:.2f} | {comm:.3f} | {100 * eff:.0f}% |")
    print()
    print("Ranks at which the all-reduce takes as long as the compute (efficiency 50%):")
    for name, p in SHAPES.items():
        b = 4 * p
        for gbps in (10, 25, 100):
            bw = gbps * 1e9 / 8
            # 6 P T / (N F) = 2B/bw + (N-1)(c/bw + l): solve by scanning
            n = next((n for n in range(2, 10**6)
                      if 6 * p * tokens / n / a.flops <= 2 * b / bw + (n - 1) * (a.chunk / bw + a.latency)), None)
            print(f"  {name}, {gbps} Gb/s: {n} ranks" + (" (beyond the batch's sequences)" if n and n > a.seqs else ""))


if __name__ == "__main__":
    main()
