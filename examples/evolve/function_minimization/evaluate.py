# Evaluator for function minimisation: reads {"x", "y"} from the candidate's last stdout line
# (from the file evaluator.run wrote, --stdout FILE; or by running the candidate, PROGRAM),
# rejects non-finite or out-of-range points, and prints combined_score = -f(x, y).
import json
import math
import subprocess
import sys


def f(x, y):
    return math.sin(x) * math.cos(y) + math.sin(x * y) + (x * x + y * y) / 20


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


if len(sys.argv) == 3 and sys.argv[1] == "--stdout":  # the output of evaluator.run
    with open(sys.argv[2]) as f:
        out = f.read()
else:
    r = subprocess.run([sys.executable, sys.argv[1]], capture_output=True, text=True, timeout=15)
    if r.returncode != 0:
        fail(f"the program exited with status {r.returncode}:\n{r.stderr[-1500:]}")
    out = r.stdout
lines = [l for l in out.splitlines() if l.strip()]
try:
    p = json.loads(lines[-1])
    x, y = p["x"], p["y"]
except (IndexError, ValueError, KeyError, TypeError):
    fail("the program's last line is not {\"x\": ..., \"y\": ...}")
for v in (x, y):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        fail(f"({x!r}, {y!r}) is not a finite point")
    if abs(v) > 5:
        fail(f"({x}, {y}) is outside [-5, 5]^2")
value = f(x, y)
dist = math.hypot(x + 1.704, y - 0.678)
print(json.dumps({"combined_score": -value, "value": value, "distance_to_known_min": dist}))
