# Circle packing, n = 26: prints {"circles": [[x, y, r], ...]} on its last line.
import json
import math


def construct():
    """Returns the 26 circle centres as (x, y) pairs."""
    # EVOLVE-BLOCK-START
    centres = [(0.5, 0.5)]
    for i in range(8):
        a = 2 * math.pi * i / 8
        centres.append((0.5 + 0.3 * math.cos(a), 0.5 + 0.3 * math.sin(a)))
    for i in range(17):
        a = 2 * math.pi * i / 17
        centres.append((0.5 + 0.7 * math.cos(a), 0.5 + 0.7 * math.sin(a)))
    return [(min(max(x, 0.01), 0.99), min(max(y, 0.01), 0.99)) for x, y in centres]
    # EVOLVE-BLOCK-END


def max_radii(centres):
    """Largest radii keeping every circle in the square and the circles disjoint: start from
    the distance to the border, then shrink each overlapping pair proportionally."""
    n = len(centres)
    r = [min(x, y, 1 - x, 1 - y) for x, y in centres]
    for i in range(n):
        for j in range(i + 1, n):
            d = math.dist(centres[i], centres[j])
            if r[i] + r[j] > d:
                s = d / (r[i] + r[j])
                r[i] *= s
                r[j] *= s
    # Rounding can leave a pair overlapping by an ulp; shrink a hair so the exact check passes.
    return [max(0.0, x * (1 - 1e-12)) for x in r]


if __name__ == "__main__":
    c = construct()
    print(json.dumps({"circles": [[x, y, r] for (x, y), r in zip(c, max_radii(c))]}))
