#!/usr/bin/env bash
# Builds the libFuzzer target fuzz/TARGET.cpp with clang (ASan + UBSan, built outside the g++
# tree) and runs it for a bounded number of inputs from a freshly written seed corpus.
#
#   scripts/fuzz.sh TARGET OUT_DIR [RUNS] [libFuzzer flags...]
#
# Everything lands in OUT_DIR/TARGET: obj/ (one object per source, rebuilt only when it or a
# header it includes is newer), the binary, seeds/, corpus/ (emptied each run, so a run's
# length does not grow with past runs), log, and crash-*/timeout-* inputs on failure.
# A longer local run: scripts/fuzz.sh gguf_reader_fuzz /tmp/fuzz -1 -max_total_time=180
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [ $# -lt 2 ]; then
  echo "usage: $0 TARGET OUT_DIR [RUNS] [libFuzzer flags...]" >&2
  exit 2
fi
target="$1"
dir="$2/$target"
runs="${3:-20000}"
shift $(($# < 3 ? $# : 3))

# The table: sources under src/ that each target links, extra compile and link flags, and the
# longest input libFuzzer makes.
cflags=""
libs=""
fuzz_flags=()
case "$target" in
  safetensors_header_fuzz)
    srcs="model/safetensors.cpp model/float_formats.cpp core/file_io.cpp"
    max_len=2048 ;;
  gguf_reader_fuzz)
    srcs="model/gguf_reader.cpp model/gguf.cpp model/float_formats.cpp core/file_io.cpp"
    max_len=4096 ;;
  tokenizer_json_fuzz)
    srcs="tokenizer/bpe_tokenizer.cpp tokenizer/tokenizer_json.cpp tokenizer/byte_tokenizer.cpp
          tokenizer/pretokenizer.cpp tokenizer/unicode.cpp core/file_io.cpp core/regex.cpp"
    libs="$(pkg-config --libs libpcre2-8 icu-uc)"
    max_len=8192 ;;
  request_parser_fuzz)
    # The whole path of a request (serve/request_parse.cpp is the parser), so the engine, the
    # model and the kernels too; flags as CMakeLists.txt sets them.
    srcs="serve/server.cpp serve/request_parse.cpp serve/response_write.cpp serve/http_front.cpp
          serve/tool_calls.cpp serve/rl_sessions.cpp core/python_json.cpp
          engine/engine.cpp engine/kv_cache.cpp engine/sampler.cpp engine/team_size.cpp
          model/checkpoint.cpp model/config.cpp model/model.cpp model/safetensors.cpp
          model/lora_adapter.cpp model/gguf.cpp
          model/float_formats.cpp tokenizer/bpe_tokenizer.cpp tokenizer/tokenizer_json.cpp
          tokenizer/byte_tokenizer.cpp tokenizer/chat_template.cpp
          tokenizer/pretokenizer.cpp tokenizer/text_tokenizer.cpp tokenizer/unicode.cpp
          core/file_io.cpp core/regex.cpp core/strings.cpp
          $(cd "$root/src" && echo kernels/*.cpp)"
    blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
    cflags="-march=x86-64-v3 -fno-math-errno -fno-trapping-math -fopenmp -Wno-pass-failed
            -isystem /usr/include/x86_64-linux-gnu/openblas-openmp
            $(pkg-config --cflags cpp-httplib)"
    libs="-fopenmp $blas/libopenblas.so -Wl,-rpath,$blas
          $(pkg-config --libs cpp-httplib libpcre2-8 icu-uc)"
    max_len=4096
    if ! echo '#include <omp.h>' | clang++ -fopenmp -x c++ -fsyntax-only - 2>/dev/null; then
      echo "fuzz.sh: $target needs clang's OpenMP (apt-get install libomp-dev)" >&2
      exit 1
    fi
    export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive ;;
  *)
    echo "fuzz.sh: unknown target '$target' (see the table in $0)" >&2
    exit 2 ;;
esac

# Seeds: small valid inputs, so the fuzzer starts past the first checks.
seeds_safetensors_header_fuzz() {
  /usr/bin/python3 - "$1" <<'PY'
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
}

seeds_gguf_reader_fuzz() {
  /usr/bin/python3 - "$1" <<'PY'
import struct, sys, os
# GGUF v3: magic, version, tensor count, kv count, kvs, tensor infos, data at the alignment.
def s(x): x = x.encode(); return struct.pack("<Q", len(x)) + x
def kv(key, vtype, payload): return s(key) + struct.pack("<I", vtype) + payload
def arr(etype, items): return struct.pack("<IQ", etype, len(items)) + b"".join(items)
def gguf(kvs, tensors, align=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs)
    data, infos = b"", b""
    for name, ne, ttype, blob in tensors:
        infos += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        infos += struct.pack("<IQ", ttype, len(data))
        data += blob + bytes((-len(blob)) % align)
    out += infos
    return out + bytes((-len(out)) % align) + data
d = sys.argv[1]
f32 = struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
f16 = struct.pack("<4H", 0x3C00, 0xC000, 0x7C00, 0x0001)
q8 = struct.pack("<H", 0x2C00) + bytes(range(32))
meta = [kv("general.architecture", 8, s("qwen2")), kv("general.alignment", 4, struct.pack("<I", 32)),
        kv("qwen2.block_count", 4, struct.pack("<I", 2)), kv("general.flag", 7, b"\x01"),
        kv("qwen2.rope.freq_base", 6, struct.pack("<f", 10000.0)),
        kv("tokenizer.ggml.tokens", 9, arr(8, [s("a"), s("b"), s("ab")])),
        kv("tokenizer.ggml.token_type", 9, arr(5, [struct.pack("<i", 1)] * 3)),
        kv("nested", 9, arr(9, [arr(10, [struct.pack("<Q", 7)])])),
        kv("x.i64", 11, struct.pack("<q", -5)), kv("x.f64", 12, struct.pack("<d", 0.25))]
open(os.path.join(d, "full"), "wb").write(gguf(meta, [("token_embd.weight", [2, 2], 0, f32),
    ("blk.0.attn_q.weight", [4], 1, f16), ("blk.0.ffn_up.weight", [32], 8, q8)]))
open(os.path.join(d, "meta_only"), "wb").write(gguf(meta[:3], []))
open(os.path.join(d, "align64"), "wb").write(gguf([kv("general.alignment", 4, struct.pack("<I", 64))],
    [("a", [1, 4], 0, f32), ("b", [4], 0, f32)], align=64))
PY
}

seeds_tokenizer_json_fuzz() {
  cp "$root/tests/fixtures/tokenizer/byte_tokenizer.json" "$1/byte_tokenizer.json"
  /usr/bin/python3 - "$1" <<'PY'
import json, sys, os
d = sys.argv[1]
# A tiny Qwen2-shaped tokenizer: NFC, Split(Regex) + ByteLevel, merges, added special tokens.
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
chars = [chr(c) for c in cs]
vocab = {c: i for i, c in enumerate(chars)}
merges = [["H", "e"], ["l", "l"], ["He", "ll"], ["Ġ", "w"], ["1", "2"]]
for a, b in merges: vocab.setdefault(a + b, len(vocab))
regex = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
added = [{"id": len(vocab) + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
          "normalized": False, "special": True} for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])]
qwen = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": None, "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges}}
json.dump(qwen, open(os.path.join(d, "qwen_like.json"), "w"), ensure_ascii=False)
# GPT-2 style: ByteLevel with its own regex, merges as "a b" strings, no normalizer.
gpt2 = dict(qwen, normalizer=None, added_tokens=[],
            pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True, "use_regex": True})
gpt2["model"] = dict(qwen["model"], merges=[a + " " + b for a, b in merges])
json.dump(gpt2, open(os.path.join(d, "gpt2_like.json"), "w"), ensure_ascii=False)
PY
}

seeds_request_parser_fuzz() {
  /usr/bin/python3 - "$1" <<'PY'
import json, os, sys
d = sys.argv[1]
# First byte: 0 /v1/completions, 1 /v1/chat/completions; then the JSON body.
seeds = {
    "completion": (0, {"model": "tiny", "prompt": "2 5 +", "max_tokens": 3, "temperature": 0,
                       "stop": ["\n", "x"], "seed": 7}),
    "completion_ids": (0, {"prompt": [72, 105, 33], "max_tokens": 2, "n": 2, "top_p": 0.9,
                           "top_k": 5, "min_p": 0.1, "logprobs": 2, "ignore_eos": True}),
    "completion_stream": (0, {"prompt": ["abc"], "max_tokens": 2, "stream": True,
                              "stream_options": {"include_usage": True}, "stop": "c"}),
    "chat": (1, {"model": "", "messages": [{"role": "system", "content": "Be brief."},
             {"role": "user", "content": "Hi \u00e9"}], "max_completion_tokens": 2,
             "logprobs": True, "top_logprobs": 3, "seed": 18446744073709551615}),
    "chat_parts": (1, {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"},
                   {"type": "text", "text": "b"}]}, {"role": "assistant", "content": "c"}],
                   "max_tokens": 1, "stream": True, "temperature": 1.5}),
    "bad": (0, {"prompt": "", "max_tokens": -1}),
    "tools": (1, {"messages": [{"role": "user", "content": "2+3?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type":
                   "function", "function": {"name": "add", "arguments": "{\"a\": 2}"}}]},
                  {"role": "tool", "tool_call_id": "c", "content": "5"}],
                  "tools": [{"type": "function", "function": {"name": "add",
                             "parameters": {"type": "object"}}}],
                  "tool_choice": {"type": "function", "function": {"name": "add"}},
                  "max_tokens": 2, "stream": True}),
}
for name, (route, body) in seeds.items():
    open(os.path.join(d, name), "wb").write(bytes([route]) + json.dumps(body).encode())
PY
}

# ---- build ------------------------------------------------------------------------------------
# An earlier version of this script put the fuzzer binary where its folder now goes.
if [ -e "$dir" ] && [ ! -d "$dir" ]; then rm -f "$dir"; fi
mkdir -p "$dir/obj"
cxx=(clang++ -std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined
     -fno-sanitize-recover=undefined -I"$root/src")
# Compiles $1 to $2 (and sets relink) unless $2 is newer than $1 and than every header its .d file lists.
compile() {
  local src="$1" obj="$2" dep="${2%.o}.d"
  if [ -f "$obj" ] && [ -f "$dep" ]; then
    local stale=0 f
    for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"); do
      if [ "$f" -nt "$obj" ]; then stale=1; break; fi
    done
    [ $stale = 0 ] && return 0
  fi
  # shellcheck disable=SC2086
  "${cxx[@]}" $cflags -MMD -MF "$dep" -c "$src" -o "$obj"
  relink=1
}
objs=()
relink=0
for s in fuzz/"$target".cpp $(for x in $srcs; do echo "src/$x"; done); do
  o="$dir/obj/$(echo "$s" | tr / _).o"
  compile "$root/$s" "$o"
  objs+=("$o")
done
bin="$dir/$target"
if [ $relink = 1 ] || [ ! -x "$bin" ]; then
  # shellcheck disable=SC2086
  clang++ -fsanitize=fuzzer,address,undefined "${objs[@]}" $libs -o "$bin"
fi

# ---- run --------------------------------------------------------------------------------------
rm -rf "$dir/seeds" "$dir/corpus"
mkdir -p "$dir/seeds" "$dir/corpus"
"seeds_$target" "$dir/seeds"
if [ -d "$root/fuzz/corpus/$target" ]; then cp "$root/fuzz/corpus/$target"/* "$dir/seeds/"; fi
if "$bin" -runs="$runs" -max_len="$max_len" -timeout=10 -seed=1 -artifact_prefix="$dir/" \
    ${fuzz_flags[@]+"${fuzz_flags[@]}"} "$@" "$dir/corpus" "$dir/seeds" >"$dir/log" 2>&1; then
  tail -n 3 "$dir/log"
else
  tail -n 80 "$dir/log"
  echo "fuzz.sh: $target failed; the input is saved as $dir/crash-* (or timeout-*, leak-*);" \
       "reproduce with: $bin FILE" >&2
  exit 1
fi
