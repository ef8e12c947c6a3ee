#!/usr/bin/env python3
"""Sizes of the product code: files over a line limit and functions over a length limit,
outside tests (`#[cfg(test)]` modules, `tests/` directories, the integration crate).

    python3 integration/tools/code-sizes.py [--fn-limit 80] [--file-limit 600] [--top N]

Exits 1 when anything is over a limit. Brace matching skips strings, chars and comments
well enough for this code base (raw strings included).
"""
import argparse, os, re, sys

ROOTS = ["common", "bins"]
FN_RE = re.compile(r'^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?(extern\s+"C"\s+)?fn\s+(\w+)')


def strip(line, state):
    """Returns the line with strings, chars and comments blanked; state carries block
    comments and raw/normal strings across lines."""
    out, i, n = [], 0, len(line)
    while i < n:
        if state["block"]:
            j = line.find("*/", i)
            if j < 0:
                return "".join(out)
            state["block"] = False
            i = j + 2
            continue
        if state["str"]:
            end = state["str"]
            if end == '"':
                while i < n:
                    if line[i] == "\\":
                        i += 2
                        continue
                    if line[i] == '"':
                        state["str"] = None
                        i += 1
                        break
                    i += 1
            else:
                j = line.find(end, i)
                if j < 0:
                    return "".join(out)
                state["str"] = None
                i = j + len(end)
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        m = re.match(r'b?r(#*)"', line[i:])
        if m and (i == 0 or not (line[i - 1].isalnum() or line[i - 1] == "_")):
            state["str"] = '"' + m.group(1)
            i += len(m.group(0))
            continue
        if c == '"':
            state["str"] = '"'
            i += 1
            continue
        if c == "'":
            m = re.match(r"'(\\.[^']*|[^'\\])'", line[i:])
            if m:
                i += len(m.group(0))
                continue
        out.append(c)
        i += 1
    return "".join(out)


def scan(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    state = {"block": False, "str": None}
    clean = [strip(l, state) for l in lines]
    fns, depth, stack, test_depth, pending_test = [], 0, [], None, False
    product_lines = 0
    for no, (raw, code) in enumerate(zip(lines, clean), 1):
        if test_depth is None and re.match(r"\s*#\[cfg\(test\)\]", raw):
            pending_test = True
        in_test = test_depth is not None
        if not in_test:
            product_lines += 1
        m = FN_RE.match(code)
        if m and not in_test and not pending_test:
            stack.append([m.group(7), no, depth, False])
        for ch in code:
            if ch == "{":
                if pending_test and test_depth is None:
                    test_depth, pending_test = depth, False
                depth += 1
                if stack and not stack[-1][3] and depth == stack[-1][2] + 1:
                    stack[-1][3] = True
            elif ch == "}":
                depth -= 1
                if test_depth is not None and depth == test_depth:
                    test_depth = None
                if stack and stack[-1][3] and depth == stack[-1][2]:
                    name, start, _, _ = stack.pop()
                    fns.append((no - start + 1, name, start))
            elif ch == ";":
                if stack and not stack[-1][3] and depth == stack[-1][2]:
                    stack.pop()  # a declaration without a body
                if pending_test and test_depth is None:
                    pending_test = False
    return product_lines, fns


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fn-limit", type=int, default=80)
    ap.add_argument("--file-limit", type=int, default=600)
    ap.add_argument("--top", type=int, default=10)
    a = ap.parse_args()
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    files, fns = [], []
    for r in ROOTS:
        for d, _, names in os.walk(os.path.join(root, r)):
            if "/tests" in d.replace(root, "") or "/target" in d:
                continue
            for f in names:
                if f.endswith(".rs") and f not in ("tests.rs", "test.rs"):
                    p = os.path.join(d, f)
                    rel = os.path.relpath(p, root)
                    n, found = scan(p)
                    files.append((n, rel))
                    fns += [(l, f"{rel}:{s} {name}") for l, name, s in found]
    files.sort(reverse=True)
    fns.sort(reverse=True)
    print(f"largest files (product lines, tests excluded): {len(files)} files")
    for n, p in files[: a.top]:
        print(f"  {n:5} {p}")
    print(f"longest functions: {len(fns)} functions")
    for n, p in fns[: a.top]:
        print(f"  {n:5} {p}")
    over_files = [x for x in files if x[0] > a.file_limit]
    over_fns = [x for x in fns if x[0] > a.fn_limit]
    print(f"over {a.file_limit} lines: {len(over_files)} files; over {a.fn_limit} lines: {len(over_fns)} functions")
    for n, p in over_files:
        print(f"  file {n:5} {p}")
    for n, p in over_fns:
        print(f"  fn   {n:5} {p}")
    return 1 if over_files or over_fns else 0


if __name__ == "__main__":
    sys.exit(main())
