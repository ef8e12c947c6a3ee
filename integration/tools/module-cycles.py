#!/usr/bin/env python3
"""Module import cycles inside each crate of the workspace (product code, tests excluded).

    python3 integration/tools/module-cycles.py

A module A imports module B when A's code names an item of B through `crate::`, `super::`,
`self::` or a child module's name. A parent that only declares `mod b;` does not import b.
Prints every pair of modules that import each other and every longer cycle; exits 1 if
there is any.
"""
import os, re, sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def crates():
    for base in ["common", "common/server"] + [f"bins/{d}" for d in sorted(os.listdir(os.path.join(ROOT, "bins")))]:
        src = os.path.join(ROOT, base, "src")
        if os.path.isdir(src):
            yield base, src


def modules(src):
    mods = {}
    for d, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs") or f in ("main.rs", "tests.rs", "test.rs"):
                continue
            rel = os.path.relpath(os.path.join(d, f), src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib"):
                rel = rel[:-1]
            mods[tuple(rel)] = os.path.join(d, f)
    return mods


def product_code(path):
    text = open(path, encoding="utf-8").read()
    m = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    if m:
        text = text[: m.start()]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def reexports(mods):
    """`pub use child::{A, B}` in each module: the names it only passes on, and where from."""
    table = {}
    for mod, path in mods.items():
        code = product_code(path)
        for m in re.finditer(r"pub(?:\([^)]*\))?\s+use\s+(?:self::)?([\w:]+?)(?:::\{([^}]*)\}|::(\w+))\s*;", code):
            base = m.group(1).split("::")
            names = re.findall(r"\b(\w+)\b", m.group(2)) if m.group(2) else [m.group(3)]
            if base[0] in ("crate", "super") or not base[0]:
                continue
            for n in names:
                table[(mod, n)] = list(mod) + base
    return table


def resolve(mods, path, table=None):
    """The deepest existing module named by a path of identifiers; a name the module only
    re-exports resolves to the module it comes from."""
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in mods:
            mod = tuple(path[:n])
            if table and n < len(path) and (mod, path[n]) in table:
                return resolve(mods, table[(mod, path[n])] + path[n:], table)
            return mod
    return ()


def edges(mods):
    table = reexports(mods)
    out = {m: set() for m in mods}
    for mod, path in mods.items():
        code = product_code(path)
        children = {m[-1] for m in mods if len(m) == len(mod) + 1 and m[: len(mod)] == mod}
        refs = []
        for m in re.finditer(r"\b(crate|super|self)((?:::\w+)+|::\{)", code):
            head, rest = m.group(1), [p for p in m.group(2).split("::") if p and p != "{"]
            if head == "crate":
                base = []
            elif head == "super":
                base = list(mod[:-1])
                while rest and rest[0] == "super":
                    base, rest = base[:-1], rest[1:]
            else:
                base = list(mod)
            # `super::{a, B}`: each name in the braces.
            if m.group(2).endswith("{") or code[m.end(): m.end() + 3].startswith("::{"):
                brace = code[m.end():].split("}", 1)[0]
                for name in re.findall(r"\b(\w+)", brace):
                    refs.append(base + rest + ([] if name == "self" else [name]))
            else:
                refs.append(base + rest)
        for c in children:
            if re.search(r"(?<![:\w])" + re.escape(c) + r"::", code):
                refs.append(list(mod) + [c])
        for r in refs:
            target = resolve(mods, r, table)
            if target != mod:
                out[mod].add(target)
    return out


def cycles(graph):
    found, index, low, stack, on, counter = [], {}, {}, [], set(), [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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
                found.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    return found


def name(crate, m):
    return crate + ":" + ("::".join(m) or "crate")


def main():
    bad = 0
    for crate, src in crates():
        mods = modules(src)
        graph = edges(mods)
        for a in graph:
            for b in graph[a]:
                if a in graph.get(b, ()) and a < b:
                    print(f"pair  {name(crate, a)} <-> {name(crate, b)}")
        for comp in cycles(graph):
            bad += 1
            print(f"cycle {' -> '.join(name(crate, m) for m in sorted(comp))}")
    print(f"{bad} import cycles")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
