#!/usr/bin/env python3
"""Request latency at one client, on a quiet machine and next to busy neighbours.

    python3 bench/serve_latency.py --binary build/crucible [--requests 200]
        [--max-tokens 1,16] [--busy 2] [--shape tiny|small] [--env K=V ...]

It writes a random model (byte tokenizer; "tiny": Qwen2, hidden 64, 2 layers, vocab 320;
"small": the shape of bench/serve_bench.py), starts `crucible serve` on a free port and sends
`--requests` greedy completions one after another over one keep-alive connection (8-token
prompts, exactly --max-tokens new tokens with `ignore_eos`), after a warm-up. Then it starts
`--busy` processes that each spin one core (`while True: pass`, at the same priority as the
server) and sends the same requests again. It prints p50/p95/mean latency per phase and the
busy/quiet ratio. `--env` sets a variable for the server only (e.g. OMP_NUM_THREADS=1,
GOMP_SPINCOUNT=300000 to compare with libgomp's default spin).
"""
import argparse
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve_bench import write_model  # noqa: E402

SHAPES = {
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=320, ctx=256),
    "small": dict(hidden=256, layers=4, heads=8, kv_heads=2, ffn=704, vocab=512, ctx=1024),
}


def start_server(binary, model, env):
    proc = subprocess.Popen([binary, "serve", "--model", model, "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise SystemExit("serve did not print its address")


def run_phase(port, requests, max_tokens):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    body = json.dumps({"prompt": "abcdefgh", "max_tokens": max_tokens, "temperature": 0,
                       "ignore_eos": True})
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        times.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise SystemExit(f"HTTP {resp.status}: {data[:200]!r}")
    conn.close()
    times.sort()
    return {"p50": times[len(times) // 2], "p95": times[min(len(times) - 1, int(len(times) * 0.95))],
            "mean": statistics.fmean(times)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="build/crucible")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--max-tokens", default="1,16")
    ap.add_argument("--busy", type=int, default=2, help="busy-loop neighbour processes")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--env", action="append", default=[], help="K=V for the server")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    env = dict(os.environ)
    for kv in a.env:
        k, _, v = kv.partition("=")
        env[k] = v
    tokens = [int(t) for t in a.max_tokens.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        os.makedirs(model)
        write_model(model, **SHAPES[a.shape])
        proc, port = start_server(a.binary, model, env)
        busy = []
        try:
            for t in tokens:
                run_phase(port, max(10, a.requests // 10), t)  # warm-up
            rows = []
            quiet = {t: run_phase(port, a.requests, t) for t in tokens}
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                    for _ in range(a.busy)]
            time.sleep(0.5)
            loaded = {t: run_phase(port, a.requests, t) for t in tokens}
            for t in tokens:
                rows.append({"max_tokens": t, "quiet": quiet[t], "busy": loaded[t],
                             "ratio_p50": loaded[t]["p50"] / quiet[t]["p50"]})
        finally:
            for b in busy:
                b.kill()
                b.wait()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    if a.json:
        print(json.dumps({"shape": a.shape, "busy": a.busy, "env": a.env, "rows": rows}))
        return
    print(f"shape {a.shape}, {a.requests} requests per phase, one client, "
          f"{a.busy} busy neighbours, cores {os.cpu_count()}, env {' '.join(a.env) or '-'}")
    print("| max_tokens | quiet p50 | quiet p95 | busy p50 | busy p95 | busy/quiet p50 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        q, b = r["quiet"], r["busy"]
        print(f"| {r['max_tokens']} | {q['p50'] * 1e3:.2f} ms | {q['p95'] * 1e3:.2f} ms | "
              f"{b['p50'] * 1e3:.2f} ms | {b['p95'] * 1e3:.2f} ms | {r['ratio_p50']:.1f}x |")


if __name__ == "__main__":
    main()
