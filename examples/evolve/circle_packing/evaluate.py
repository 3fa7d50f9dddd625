# Evaluator for circle packing n = 26: reads the candidate's last stdout line (from the file
# evaluator.run wrote, --stdout FILE; or by running the candidate itself, PROGRAM)
# {"circles": [[x, y, r], ...]} and checks it exactly (Fractions of the printed floats):
# 0 <= x - r, x + r <= 1 (same for y), r >= 0, and dist(i, j) >= r_i + r_j for every pair,
# as AlphaEvolve's verifier. NaN and inf are rejected before any comparison. Prints one JSON
# line: combined_score = sum of radii (float sum in order), or exits 1 with the reason.
import json
import math
import os
import signal
import subprocess
import sys
from fractions import Fraction

N = 26


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def check(circles):
    if not isinstance(circles, list) or len(circles) != N:
        fail(f"expected {N} circles, got {len(circles) if isinstance(circles, list) else circles!r}")
    exact = []
    for k, c in enumerate(circles):
        if not isinstance(c, list) or len(c) != 3:
            fail(f"circle {k}: expected [x, y, r]")
        for v in c:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                fail(f"circle {k}: {c!r} holds a value that is not a finite number")
        x, y, r = (Fraction(v) for v in c)
        if r < 0 or x - r < 0 or y - r < 0 or x + r > 1 or y + r > 1:
            fail(f"circle {k} {c!r} is not inside the unit square")
        exact.append((x, y, r))
    for i in range(N):
        xi, yi, ri = exact[i]
        for j in range(i):
            xj, yj, rj = exact[j]
            if (xi - xj) ** 2 + (yi - yj) ** 2 < (ri + rj) ** 2:
                fail(f"circles {j} and {i} overlap")
    return sum(c[2] for c in circles)


def circles_from_output(out):
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines:
        fail("the program printed nothing")
    try:
        return json.loads(lines[-1])["circles"]
    except (ValueError, KeyError, TypeError) as e:
        fail(f"the program's last line is not {{\"circles\": [...]}}: {e}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--json":  # check a packing file directly
        with open(sys.argv[2]) as f:
            circles = json.load(f)["circles_xyr"]
    elif len(sys.argv) == 3 and sys.argv[1] == "--stdout":  # the output of evaluator.run
        with open(sys.argv[2]) as f:
            circles = circles_from_output(f.read())
    else:
        proc = subprocess.Popen([sys.executable, sys.argv[1]], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            fail("the program ran longer than 20 s")
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
        except ProcessLookupError:
            pass
        if proc.returncode != 0:
            fail(f"the program exited with status {proc.returncode}:\n{err[-1500:]}")
        circles = circles_from_output(out)
    total = check(circles)
    print(json.dumps({"combined_score": total, "sum_radii": total, "valid": 1}))


if __name__ == "__main__":
    main()
