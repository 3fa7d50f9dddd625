# Function minimisation: prints {"x": ..., "y": ...} on its last line.
import json
import math
import random


def f(x, y):
    return math.sin(x) * math.cos(y) + math.sin(x * y) + (x * x + y * y) / 20


def search():
    # EVOLVE-BLOCK-START
    rng = random.Random(1)
    x, y = 2.0, 2.0
    step = 0.3
    best = f(x, y)
    for _ in range(50):
        nx = min(5.0, max(-5.0, x + rng.uniform(-step, step)))
        ny = min(5.0, max(-5.0, y + rng.uniform(-step, step)))
        if f(nx, ny) < best:
            x, y, best = nx, ny, f(nx, ny)
    return x, y
    # EVOLVE-BLOCK-END


if __name__ == "__main__":
    x, y = search()
    print(json.dumps({"x": x, "y": y}))
