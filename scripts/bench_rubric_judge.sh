#!/bin/bash
# Judge throughput of `crucible rubric score` against `crucible serve` at 1, 8 and 32 requests
# in flight: 96 items with one judge criterion each, 16 output tokens per judgement, no retries.
# Usage: scripts/bench_rubric_judge.sh BUILD_DIR MODEL_DIR
set -euo pipefail
BIN="$1/crucible"
MODEL="$2"
D=$(mktemp -d)
trap 'kill $SP 2>/dev/null || true; rm -rf "$D"' EXIT
"$BIN" serve --model "$MODEL" --port 0 --served-model-name judge 2> "$D/serve.log" &
SP=$!
for _ in $(seq 600); do grep -q "on http://" "$D/serve.log" && break; sleep 0.1; done
URL=$(grep -o 'http://[^ ]*/v1' "$D/serve.log" | head -1)
python3 - > "$D/data.jsonl" <<'PY'
import json
for i in range(96):
    print(json.dumps({"id": f"q{i}", "prompt": f"Question {i}: what is {i} plus {i}?",
                      "response": f"The answer is {2*i}.",
                      "rubric": [{"criterion": "States the correct sum", "points": 1}]}))
PY
for c in 1 8 32; do
  s=$(date +%s.%N)
  "$BIN" rubric score --data "$D/data.jsonl" --judge "openai:$URL#judge" --out "$D/out.jsonl" \
      --max-tokens 16 --max-attempts 1 --retries 0 --concurrency $c > "$D/sum.json" 2>/dev/null
  e=$(date +%s.%N)
  python3 - "$D/sum.json" "$c" "$s" "$e" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["judge"]
t = float(sys.argv[4]) - float(sys.argv[3])
r = j["judge_requests"]
print(f"concurrency {sys.argv[2]:>2}: {r} judge requests in {t:.2f} s = {r / t:.1f}/s "
      f"({j['judge_prompt_tokens'] // max(r, 1)} prompt tokens each)")
PY
done
