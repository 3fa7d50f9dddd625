#!/usr/bin/env python3
"""Checks that every #include "..." under src/ follows the layer table of docs/ARCHITECTURE.md.

The table is the one place the layers are written down; this script reads it, so the code and
the page cannot drift apart. Its rows are read from the first table under "## Layers":

    | folder | what it holds | uses |
    | `src/model/` | ... | kernels, core |
    | `src/serve/openai_client.*` | ... | core |

The first column names one layer: a folder (`src/x/`, `src/x/y/`) or the files of one stem
(`src/x/stem.*`). Its name is the path without `src/`, the trailing `/` and `.*`: `model`,
`reward/verify`, `serve/openai_client`. The last column lists, separated by commas, the layers
its files may include; `—` means none and `everything` means any (the CLI). The columns between
are prose and are not read.

A file belongs to the most specific layer whose path holds it (`src/serve/openai_client.cpp`
to `serve/openai_client`, `src/serve/server.cpp` to `serve`). A file may include its own
layer, the layers its row lists, and the layers inside either (listing `reward` allows
`reward/verify`). The check fails when
  - an include reaches a layer the including file's row does not allow,
  - a file under src/ belongs to no row (a new folder needs its row),
  - a row lists a layer that none of its files includes (the table says what the code does),
  - a row names an unknown layer, or the table has a cycle (`everything` counts as using every
    other layer, so nothing may use the CLI).
Includes that name no file under src/ (a generated file such as rl_presets.inc, which lives in
the build tree) are not layered; the compiler checks that they exist.

Usage: check_layers.py [--root REPO] [--doc FILE]   check the tree (exit 1 on a violation)
       check_layers.py --self-test                  prove on small trees that the check fails
Python 3 standard library only.
"""

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
NAME = re.compile(r"^[a-z0-9_]+(/[a-z0-9_]+)*$")
NONE = {"—", "–", "-", ""}
EVERYTHING = "everything"
SOURCE_SUFFIXES = {".h", ".hpp", ".cpp", ".cc", ".inc", ".cu", ".cuh"}


class TableError(Exception):
    """The layer table itself cannot be read."""


class Layer:
    def __init__(self, name, uses, line):
        self.name = name  # "model", "reward/verify", "serve/openai_client"
        self.uses = uses  # list of layer names, or None for everything
        self.line = line  # line of its row in the doc


def layer_name(path, where):
    if not path.startswith("src/"):
        raise TableError(f"{where}: the first column must name a path under src/, got `{path}`")
    rest = path[len("src/"):]
    if rest.endswith("/"):
        rest = rest[:-1]
    elif rest.endswith(".*"):
        rest = rest[:-2]
    else:
        raise TableError(f"{where}: `{path}` must be a folder (`src/x/`) or a stem (`src/x/y.*`)")
    if not NAME.match(rest):
        raise TableError(f"{where}: `{path}` is not a plain path")
    return rest


def parse_uses(cell, where):
    cell = cell.strip()
    if cell in NONE:
        return []
    if cell == EVERYTHING:
        return None
    uses = [e.strip() for e in cell.split(",")]
    for e in uses:
        if not NAME.match(e):
            raise TableError(
                f"{where}: the uses column is layer names separated by commas "
                f"(or — or everything); '{e}' is not one")
    return uses


def parse_table(text, doc_name):
    """Returns {name: Layer} from the first table under '## Layers'."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("## Layers")), None)
    if start is None:
        raise TableError(f'{doc_name}: no "## Layers" section')
    layers = {}
    header = False
    for i in range(start + 1, len(lines)):
        line = lines[i].strip()
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            if header:
                break  # the table ended
            continue
        # The prose column may hold escaped pipes; only the first and last cells are read.
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        first, last = cells[0], cells[-1]
        where = f"{doc_name}:{i + 1}"
        if not header:
            if first.lower() != "folder" or last.lower() != "uses":
                raise TableError(f"{where}: the layer table's first column must be 'folder' and "
                                 f"its last 'uses'")
            header = True
            continue
        if set(first) <= set("-: "):
            continue  # the separator row
        paths = re.findall(r"`([^`]+)`", first)
        if len(paths) != 1:
            raise TableError(f"{where}: the first column must name one path in backticks")
        name = layer_name(paths[0], where)
        if name in layers:
            raise TableError(f"{where}: layer {name} has two rows (line {layers[name].line})")
        layers[name] = Layer(name, parse_uses(last, where), i + 1)
    if not layers:
        raise TableError(f"{doc_name}: the Layers section has no table")
    for layer in layers.values():
        for use in layer.uses or []:
            if use not in layers:
                raise TableError(f"{doc_name}:{layer.line}: {layer.name} uses '{use}', which has "
                                 f"no row")
            if use == layer.name:
                raise TableError(f"{doc_name}:{layer.line}: {layer.name} lists itself")
    return layers


def within(name, outer):
    """Whether layer `name` is `outer` or lies inside it."""
    return name == outer or name.startswith(outer + "/")


def layer_of(rel, layers):
    """The most specific layer holding the src-relative path `rel`, or None."""
    best = None
    for name in layers:
        tail = rel[len(name):] if rel.startswith(name) else None
        if tail is None or not tail:
            continue
        if tail.startswith("/") or (tail.startswith(".") and "/" not in tail):
            if best is None or len(name) > len(best):
                best = name
    return best


def find_cycle(layers):
    """A list of layer names forming a cycle in the table, or None."""
    def edges(name):
        layer = layers[name]
        out = [n for n in layers if n != name] if layer.uses is None else list(layer.uses)
        # A layer may use the layers inside it, so those are edges too.
        out += [n for n in layers if n != name and within(n, name)]
        return out

    state = {}  # name -> 1 on the stack, 2 done
    stack = []

    def visit(name):
        state[name] = 1
        stack.append(name)
        for nxt in edges(name):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[name] = 2
        return None

    for name in sorted(layers):
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def check(root, doc):
    """Returns (problems, summary) for the tree at `root` against the table in `doc`."""
    root = Path(root)
    doc = Path(doc)
    try:
        doc_name = str(doc.relative_to(root))
    except ValueError:
        doc_name = str(doc)
    try:
        layers = parse_table(doc.read_text(encoding="utf-8"), doc_name)
    except TableError as e:
        return [str(e)], ""
    problems = []
    cycle = find_cycle(layers)
    if cycle:
        problems.append(f"{doc_name}: the layer table has a cycle: {' -> '.join(cycle)}")
    src = root / "src"
    used = {name: set() for name in layers}
    files = includes = 0
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if filename.startswith(".") or path.suffix not in SOURCE_SUFFIXES:
                continue
            rel = path.relative_to(src).as_posix()
            own = layer_of(rel, layers)
            if own is None:
                problems.append(f"src/{rel}: no row of {doc_name}'s layer table holds this file "
                                f"(add a row for its folder)")
                continue
            files += 1
            layer = layers[own]
            text = path.read_text(encoding="utf-8", errors="replace")
            for lineno, line in enumerate(text.splitlines(), 1):
                m = INCLUDE.match(line)
                if not m:
                    continue
                inc = m.group(1)
                target = None
                for base in (src, path.parent):
                    candidate = Path(os.path.normpath(base / inc))
                    if candidate.is_file():
                        target = candidate
                        break
                if target is None or src not in target.parents:
                    continue  # generated or outside src/: not layered
                includes += 1
                trel = target.relative_to(src).as_posix()
                other = layer_of(trel, layers)
                if other is None:
                    continue  # reported when that file itself is scanned
                if layer.uses is None:
                    continue
                allowed = [u for u in layer.uses if within(other, u)]
                if allowed:
                    used[own].add(max(allowed, key=len))  # the most specific entry allows it
                    continue
                if within(other, own):
                    continue
                listed = ", ".join(layer.uses) if layer.uses else "nothing"
                problems.append(
                    f"src/{rel}:{lineno}: includes \"{inc}\" (layer {other}), but {own} may use "
                    f"only {listed} ({doc_name}:{layer.line})")
    for name, layer in sorted(layers.items()):
        for use in layer.uses or []:
            if use not in used[name]:
                problems.append(f"{doc_name}:{layer.line}: {name} lists {use}, but no file of "
                                f"{name} includes it (the table says what the code does)")
    summary = f"{files} files, {includes} includes within src/, {len(layers)} layers"
    return problems, summary


# ---- self-test: small trees the check must pass and fail ----------------------------------

DOC = """# Architecture

## Layers

| folder | what it holds | uses |
| --- | --- | --- |
| `src/core/` | errors, `a \\| b` | — |
| `src/low/` | a layer | low/inner, core |
| `src/low/inner/` | a layer inside a layer | core |
| `src/net/client.*` | a client | core |
| `src/net/` | a server | low, core |
| `src/high/` | on top | low, net/client, core |
| `src/cli/` | the binary | everything |

After the table.
"""

FILES = {
    "src/core/error.h": "#pragma once\n",
    "src/low/low.h": '#include "core/error.h"\n#include "low/inner/deep.h"\n',
    "src/low/inner/deep.h": '#include "core/error.h"\n',
    "src/net/client.h": '#include "core/error.h"\n',
    "src/net/client.cpp": '#include "net/client.h"\n',
    "src/net/server.cpp": '#include "net/client.h"\n#include "low/low.h"\n#include "core/error.h"\n',
    "src/high/high.cpp": ('#include "high/high.h"\n#include "low/low.h"\n#include "net/client.h"\n'
                          '#include "generated.inc"\n#include <vector>\n'),
    "src/high/high.h": '#include "core/error.h"\n',
    "src/cli/main.cpp": '#include "high/high.h"\n#include "net/client.h"\n',
}

# (what, change to the files, change to the doc, a piece of the expected problem or None)
CASES = [
    ("the good tree passes", {}, None, None),
    ("an include that points up fails",
     {"src/low/low.cpp": '#include "low/low.h"\n\n#include "high/high.h"\n'}, None,
     'src/low/low.cpp:3: includes "high/high.h" (layer high), but low may use only low/inner, core'),
    ("the client may not include its server's folder",
     {"src/net/client.cpp": '#include "net/client.h"\n#include "low/low.h"\n'}, None,
     "(layer low), but net/client may use only core"),
    ("a layer inside another may not include its outer layer",
     {"src/low/inner/deep.h": '#include "low/low.h"\n'}, None,
     "(layer low), but low/inner may use only core"),
    ("a layer that uses only the client may not include the server",
     {"src/net/server.h": "#pragma once\n", "src/high/high.h": '#include "net/server.h"\n'},
     None, "(layer net), but high may use only low, net/client, core"),
    ("a folder without a row fails", {"src/extra/x.cpp": '#include "core/error.h"\n'}, None,
     "src/extra/x.cpp: no row"),
    ("a listed layer that no file uses fails", {}, ("| low, net/client, core |",
                                                    "| low, net/client, net, core |"),
     "high lists net, but no file of high includes it"),
    ("a cycle in the table fails", {"src/core/more.h": '#include "low/low.h"\n'},
     ("| errors, `a \\| b` | — |", "| errors, `a \\| b` | low |"),
     "the layer table has a cycle"),
    ("nothing may use the CLI", {"src/high/cli_user.h": '#include "cli/main.h"\n',
                                 "src/cli/main.h": "#pragma once\n"},
     ("| low, net/client, core |", "| low, net/client, cli, core |"),
     "the layer table has a cycle"),
    ("an unknown layer in the uses column fails", {},
     ("| a layer | low/inner, core |", "| a layer | low/inner, core, nowhere |"),
     "low uses 'nowhere', which has no row"),
]


def self_test():
    failures = 0
    for what, changes, doc_change, expected in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            doc = DOC
            if doc_change:
                assert doc_change[0] in doc, doc_change[0]
                doc = doc.replace(doc_change[0], doc_change[1], 1)
            for rel, text in {**FILES, **changes}.items():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                (root / rel).write_text(text, encoding="utf-8")
            (root / "docs").mkdir()
            (root / "docs/ARCHITECTURE.md").write_text(doc, encoding="utf-8")
            problems, _ = check(root, root / "docs/ARCHITECTURE.md")
            if expected is None:
                ok = not problems
            else:
                ok = any(expected in p for p in problems)
            print(f"{'ok  ' if ok else 'FAIL'} {what}")
            if not ok:
                failures += 1
                print(f"     expected {'no problem' if expected is None else repr(expected)}; "
                      f"got: {problems}")
    if failures:
        print(f"self-test: {failures} of {len(CASES)} cases failed")
        return 1
    print(f"self-test: all {len(CASES)} cases behaved")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                        help="the repository (default: the one holding this script)")
    parser.add_argument("--doc", help="the page with the table (default: ROOT/docs/ARCHITECTURE.md)")
    parser.add_argument("--self-test", action="store_true",
                        help="run the check on small trees that must pass or fail")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    root = Path(args.root)
    doc = Path(args.doc) if args.doc else root / "docs" / "ARCHITECTURE.md"
    problems, summary = check(root, doc)
    for p in problems:
        print(p)
    if problems:
        print(f"layer check: {len(problems)} problem(s)")
        return 1
    print(f"layer check: ok ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
