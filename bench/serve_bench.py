#!/usr/bin/env python3
"""Server throughput and latency under N concurrent clients, beside the same workload run
through Engine::generate directly (`crucible generate`), with the ratio.

    python3 bench/serve_bench.py --binary build-serve/crucible [--clients 1,8,64]
        [--requests 4] [--max-tokens 64] [--prompt-tokens 32]

It writes a random model of the "small" bench shape (Qwen2, hidden 256, 4 layers, vocab 512;
src/cli/bench_shapes.h) with the byte tokenizer, starts `crucible serve` on a free port and,
for each client count C, runs C threads that each send `--requests` greedy completions one
after another (`ignore_eos`, so every request generates exactly --max-tokens tokens). The
reference is `crucible generate` over the same prompts in waves of C (C sequences in flight,
as the server has; its own tok/s, model loading excluded). Latency is per request, end to end over HTTP.
"""
import argparse
import array
import http.client
import json
import math
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time



def write_model(d, hidden=256, layers=4, heads=8, kv_heads=2, ffn=704, vocab=512, ctx=1024):
    head_dim = hidden // heads
    q, kv = heads * head_dim, kv_heads * head_dim
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
           "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads,
           "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": ctx,
           "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": False,
           "torch_dtype": "float32", "hidden_act": "silu"}
    rng = random.Random(0)
    tensors = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,),
               "lm_head.weight": (vocab, hidden)}
    for l in range(layers):
        p = f"model.layers.{l}."
        tensors.update({p + "self_attn.q_proj.weight": (q, hidden), p + "self_attn.q_proj.bias": (q,),
                        p + "self_attn.k_proj.weight": (kv, hidden), p + "self_attn.k_proj.bias": (kv,),
                        p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.v_proj.bias": (kv,),
                        p + "self_attn.o_proj.weight": (hidden, q),
                        p + "mlp.gate_proj.weight": (ffn, hidden), p + "mlp.up_proj.weight": (ffn, hidden),
                        p + "mlp.down_proj.weight": (hidden, ffn),
                        p + "input_layernorm.weight": (hidden,),
                        p + "post_attention_layernorm.weight": (hidden,)})
    header, blobs, offset = {}, [], 0
    for name, shape in tensors.items():
        n = math.prod(shape)
        a = array.array("f", [1.0] * n if name.endswith("norm.weight")
                        else [rng.gauss(0, 0.05) for _ in range(n)])
        b = a.tobytes()  # little-endian on x86
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)


def prompts(n, length):
    rng = random.Random(1)
    return ["".join(chr(rng.randint(97, 122)) for _ in range(length)) for _ in range(n)]


def direct(binary, model, texts, max_tokens, tmp):
    """tok/s of Engine::generate over `texts` at once (crucible generate's own figure)."""
    src, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
    with open(src, "w") as f:
        for t in texts:
            f.write(json.dumps({"prompt": t}) + "\n")
    r = subprocess.run([binary, "generate", "--model", model, "--in", src, "--out", out,
                        "--temperature", "0", "--max-tokens", str(max_tokens)],
                       capture_output=True, text=True, check=True)
    return float(re.findall(r"([0-9.]+) tok/s", r.stderr)[-1])


def direct_in_waves(binary, model, texts, clients, max_tokens, tmp):
    """The server's workload with at most `clients` sequences in flight: one generate() per
    wave of `clients` prompts; tok/s over all waves."""
    seconds = 0.0
    for w in range(0, len(texts), clients):
        wave = texts[w:w + clients]
        seconds += len(wave) * max_tokens / direct(binary, model, wave, max_tokens, tmp)
    return len(texts) * max_tokens / seconds


def percentile(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def load(port, texts, clients, max_tokens):
    latencies, tokens, lock = [], [0], threading.Lock()

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for t in texts[k::clients]:
            body = json.dumps({"prompt": t, "max_tokens": max_tokens, "temperature": 0,
                               "ignore_eos": True})
            t0 = time.perf_counter()
            conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
            r = json.loads(conn.getresponse().read())
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                tokens[0] += r["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tokens[0] / (time.perf_counter() - t0), latencies


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/crucible")
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "small")
        os.makedirs(model)
        write_model(model)
        log = open(os.path.join(tmp, "serve.log"), "w+")
        server = subprocess.Popen([a.binary, "serve", "--model", model, "--port", "0"],
                                  stderr=log)
        port = None
        for _ in range(600):
            log.seek(0)
            m = re.search(r"http://127\.0\.0\.1:(\d+)", log.read())
            if m:
                port = int(m.group(1))
                break
            time.sleep(0.05)
        if port is None:
            server.kill()
            sys.exit("serve did not start")
        print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}  model small "
              f"(random)  prompt {a.prompt_tokens} tokens  max_tokens {a.max_tokens}  "
              f"{a.requests} requests per client")
        print(f"{'clients':>7} {'server tok/s':>12} {'p50 s':>7} {'p95 s':>7} "
              f"{'generate tok/s':>14} {'ratio':>6}")
        try:
            for c in [int(x) for x in a.clients.split(",")]:
                texts = prompts(c * a.requests, a.prompt_tokens)
                load(port, texts[: min(len(texts), c)], c, a.max_tokens)  # warm-up
                tps, lat = load(port, texts, c, a.max_tokens)
                ref = direct_in_waves(a.binary, model, texts, c, a.max_tokens, tmp)
                print(f"{c:>7} {tps:>12.0f} {percentile(lat, 50):>7.3f} "
                      f"{percentile(lat, 95):>7.3f} {ref:>14.0f} {tps / ref:>6.2f}", flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
