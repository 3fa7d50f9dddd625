#!/usr/bin/env bash
# The CUDA backend's check on a GPU machine, as one command (docs/CUDA.md):
#   1. configures and builds the CPU kernels (the references) and the CUDA kernels, harness and
#      benchmark (-DCRUCIBLE_CUDA_KERNELS_ONLY=ON: the GPU image lacks Crucible's other Debian
#      packages; OpenBLAS and GoogleTest come unpacked from .debs/, see --fetch-debs);
#   2. runs the op-by-op harness (every GPU op, forward and backward, against its CPU kernel);
#   3. runs the benchmark (GEMM TFLOP/s against the bf16 peak, decode linears against HBM
#      bandwidth, attention and sampling times);
#   4. writes OUT/device_check.json: the device, nvcc, every test's result (with the failure
#      messages) and the benchmark's figures; logs beside it.
# Exit status: 0 only when it built, every test passed (none skipped) and the benchmark ran.
#
# Here, once, before calling the device:   scripts/device_check.sh --fetch-debs
#   (downloads libopenblas0-openmp, libopenblas-openmp-dev, libgfortran5 and libgtest-dev into
#   .debs/, which git ignores; about 13 MB)
# On the device (the `run` tool, carry [".debs"]):   scripts/device_check.sh "$OUT"
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fetch-debs" ]]; then
    set -e
    grep -qx '/.debs/' .git/info/exclude 2>/dev/null || echo '/.debs/' >>.git/info/exclude
    mkdir -p .debs
    (cd .debs && apt-get download libopenblas0-openmp libopenblas-openmp-dev libgfortran5 \
        libgtest-dev)
    ls -l .debs
    exit 0
fi

OUT="${1:-${OUT:-bench/results/device}}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUILD="${BUILD:-build-device}"
DEPS=/tmp/crucible-deps
started=$(date +%s)

if compgen -G ".debs/*.deb" >/dev/null; then
    mkdir -p "$DEPS"
    for f in .debs/*.deb; do dpkg -x "$f" "$DEPS"; done
fi
export LD_LIBRARY_PATH="$DEPS/usr/lib/x86_64-linux-gnu/openblas-openmp:$DEPS/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv \
    >"$OUT/nvidia_smi.csv" 2>&1
"$NVCC" --version >>"$OUT/nvidia_smi.csv" 2>&1

build_rc=0
{
    cmake -S . -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
        -DCRUCIBLE_CUDA_KERNELS_ONLY=ON -DCRUCIBLE_DEPS_ROOT="$DEPS" \
        -DCMAKE_CUDA_COMPILER="$NVCC" &&
        cmake --build "$BUILD" -j"$(nproc)"
} >"$OUT/build.log" 2>&1 || build_rc=$?
echo "build: rc $build_rc ($(($(date +%s) - started)) s)"

tests_rc=-1
bench_rc=-1
if [[ $build_rc == 0 ]]; then
    OMP_NUM_THREADS="$(nproc)" "$BUILD/crucible_cuda_tests" \
        --gtest_output="json:$OUT/cuda_tests.json" >"$OUT/cuda_tests.log" 2>&1
    tests_rc=$?
    echo "tests: rc $tests_rc ($(($(date +%s) - started)) s)"
    "$BUILD/crucible_cuda_bench" --json "$OUT/cuda_bench.json" >"$OUT/cuda_bench.log" 2>&1
    bench_rc=$?
    echo "bench: rc $bench_rc ($(($(date +%s) - started)) s)"
    cat "$OUT/cuda_bench.log"
fi

python3 - "$OUT" "$build_rc" "$tests_rc" "$bench_rc" "$(($(date +%s) - started))" <<'PY'
import json, os, sys
out, build_rc, tests_rc, bench_rc, seconds = sys.argv[1], *map(int, sys.argv[2:6])
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
tests = []
t = load("cuda_tests.json")
for suite in (t or {}).get("testsuites", []):
    for case in suite.get("testsuite", []):
        result = "skipped" if case.get("result") == "SKIPPED" else (
            "failed" if case.get("failures") else "passed")
        tests.append({"name": suite["name"] + "." + case["name"], "result": result,
                      "failures": [f.get("failure", "")[:2000] for f in case.get("failures", [])]})
smi = open(os.path.join(out, "nvidia_smi.csv")).read() if os.path.exists(
    os.path.join(out, "nvidia_smi.csv")) else ""
counts = {r: sum(1 for x in tests if x["result"] == r) for r in ("passed", "failed", "skipped")}
ok = build_rc == 0 and tests_rc == 0 and bench_rc == 0 and counts["skipped"] == 0 and tests
summary = {"ok": bool(ok), "seconds": seconds, "build_rc": build_rc, "tests_rc": tests_rc,
           "bench_rc": bench_rc, "nvidia_smi": smi.strip().splitlines(), "tests": counts,
           "test_results": tests, "bench": load("cuda_bench.json")}
with open(os.path.join(out, "device_check.json"), "w") as f:
    json.dump(summary, f, indent=2)
    f.write("\n")
print("device_check:", "ok" if ok else "NOT ok", counts, "->", os.path.join(out, "device_check.json"))
sys.exit(0 if ok else 1)
PY
