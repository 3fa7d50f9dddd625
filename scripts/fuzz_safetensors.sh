#!/usr/bin/env bash
# Builds the safetensors libFuzzer target with clang (ASan + UBSan) and runs it for a bounded
# number of inputs from a small seed corpus. Usage: scripts/fuzz_safetensors.sh OUT_DIR [RUNS]
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
out="$1"
runs="${2:-20000}"
mkdir -p "$out/corpus"
bin="$out/safetensors_header_fuzz"
if [ ! -x "$bin" ] || [ -n "$(find "$src/src/model/safetensors.cpp" "$src/src/model/safetensors.h" "$src/fuzz" -newer "$bin")" ]; then
  clang++ -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$src/src" "$src/fuzz/safetensors_header_fuzz.cpp" "$src/src/model/safetensors.cpp" \
    "$src/src/core/file_io.cpp" -o "$bin"
fi
# Seeds: a valid two-tensor file, one with metadata, an empty-tensor file.
/usr/bin/python3 - "$out/corpus" <<'PY'
import json, struct, sys, os
def blob(header, data):
    h = json.dumps(header).encode(); h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data
d = sys.argv[1]
open(os.path.join(d, "two"), "wb").write(blob({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    "b": {"dtype": "BF16", "shape": [1, 2], "data_offsets": [8, 12]}}, bytes(12)))
open(os.path.join(d, "meta"), "wb").write(blob({"__metadata__": {"format": "pt"},
    "x": {"dtype": "I32", "shape": [], "data_offsets": [0, 4]}}, bytes(4)))
open(os.path.join(d, "empty"), "wb").write(blob({"e": {"dtype": "F16", "shape": [0, 3], "data_offsets": [0, 0]}}, b""))
PY
"$bin" -runs="$runs" -max_len=2048 -timeout=10 -seed=1 "$out/corpus" 2>&1 | tail -3
