#!/usr/bin/env python3
"""Finds import circles between the modules of each crate in the workspace.

A module may use its parent and its parent may use it (that is the tree, not
a circle). Every other reference `crate::a::b::…` (or `super::…`) from module
M to module N is lifted to the two children of their lowest common ancestor
that lie on the paths to M and N; a cycle among those siblings is a circle.
Prints each circle with one reference that makes each of its edges, and exits
1 if there is any. Run from the workspace root: python3 scripts/module_cycles.py
"""

import os
import re
import sys

CRATES = [
    "xray-core-client",
    "node-agent-lib",
    "manager-lib",
    "storage-postgres",
    "storage-sqlite",
    "cache-redis",
    "bins",
    "examples",
    "tests",
]

PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{")


def modules_of(src):
    """Maps each .rs file under src to its module path (a tuple)."""
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(root, f)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            elif len(rel) == 1 and rel[0] != "lib" and root == src and os.path.basename(src) == "bin":
                path = (rel[0],)
            else:
                path = tuple(rel)
            mods[full] = path
    return mods


def strip_comments(text):
    """Drops plain comments; doc comments stay, their links are references."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    keep = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith("///") or stripped.startswith("//!"):
            keep.append(line)
        else:
            keep.append(re.sub(r"(^|[^:/])//[^/!].*$", r"\1", line))
    return "\n".join(keep)


def references(text, here):
    """Module paths referenced from module `here` (unresolved tuples)."""
    refs = []
    for m in PATH_RE.finditer(text):
        refs.append((m.group(1), m.group(2).split("::")[1:]))
    for m in GROUP_RE.finditer(text):
        # `use crate::a::{b, c::d}`: add a::b and a::c::d
        start = m.end()
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        inner = text[start : i - 1]
        base = m.group(2).split("::")[1:]
        for item in re.split(r"[,{}]", inner):
            item = item.strip().split(" as ")[0].strip()
            if item and item != "self":
                refs.append((m.group(1), base + item.split("::")))
            elif item == "self":
                refs.append((m.group(1), base))
    out = []
    for kind, parts in refs:
        if kind == "crate":
            out.append(tuple(parts))
        else:
            # super:: chains are matched as ("super", ["super", ...]) only for
            # the first; count leading supers
            ups = 1
            while parts and parts[0] == "super":
                ups += 1
                parts = parts[1:]
            base = here[: max(0, len(here) - ups)]
            out.append(base + tuple(parts))
    return out


def resolve(path, known):
    """Longest prefix of path that is a module."""
    for n in range(len(path), -1, -1):
        if path[:n] in known:
            return path[:n]
    return ()


def find_cycles(edges):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def crate_cycles(crate):
    src = os.path.join(crate, "src")
    if not os.path.isdir(src):
        return []
    mods = modules_of(src)
    known = set(mods.values())
    edges = {}
    for file, here in mods.items():
        with open(file, encoding="utf-8") as fh:
            text = strip_comments(fh.read())
        for ref in references(text, here):
            there = resolve(ref, known)
            n = 0
            while n < min(len(here), len(there)) and here[n] == there[n]:
                n += 1
            if n == len(here) or n == len(there):
                continue  # ancestor or descendant: the tree itself
            a, b = here[: n + 1], there[: n + 1]
            edges.setdefault(a, {}).setdefault(b, f"{file} -> {'::'.join(ref)}")
    circles = []
    for comp in find_cycles(edges):
        lines = [
            f"  {'::'.join(a)} -> {'::'.join(b)}  ({edges[a][b]})"
            for a in comp
            for b in comp
            if b in edges.get(a, {})
        ]
        circles.append(f"{crate}: {' / '.join('::'.join(c) for c in comp)}\n" + "\n".join(lines))
    return circles


def main():
    circles = [c for crate in CRATES for c in crate_cycles(crate)]
    for c in circles:
        print(c)
    if circles:
        print(f"{len(circles)} import circle(s)")
        return 1
    print("no import circle between modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
