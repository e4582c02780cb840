#!/usr/bin/env python3
"""Fails when the modules of a crate import one another in a cycle.

A module is a source file (`a.rs` or `a/mod.rs`). Module A depends on module B when A's code
names a path into B: `use crate::b::X`, `super::X`, `self::b::X`, or the same paths written
inline (`crate::b::f()`). Test code is left out (`tests.rs`, `tests/` below a module, and
inline `#[cfg(test)] mod tests { ... }`): tests may reach anywhere. A parent's `mod child;`
is no edge, nor is a re-export (`pub use child::X`): an item named through a facade that
re-exports it counts as a use of the module that defines it. A parent's use of a child by bare
name (`child::f()`, `use child::X`) is an edge.

Why our own script and not `cargo modules dependencies --acyclic`: cargo-modules builds
rust-analyzer (a long cold build on CI's two cores) and counts a parent's `mod child;` as an
edge; here a parent depends on a child only where it uses it.

Usage: scripts/check-module-cycles.py [crate-src-dir ...]   (default: dataplane/src)
Prints every cycle with one reference per edge (file:line) and exits 1 if there is one.
"""

import pathlib
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
USE = re.compile(r"\buse\s+([^;]+);", re.S)
PUB_USE = re.compile(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", re.S)
CHILD = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", re.M)


def module_of(root, file):
    rel = file.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("main", "lib")):
        parts = parts[:-1]
    return tuple(parts)


def is_test(module):
    return "tests" in module


def strip_comments_and_tests(text):
    text = re.sub(r"//[^\n]*", lambda m: " " * len(m.group(0)), text)
    out = text
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        blank = "".join(c if c == "\n" else " " for c in text[m.start() : i])
        out = out[: m.start()] + blank + out[i:]
    return out


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"]."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, 0
    for i, c in enumerate(tree):
        if c == "{":
            if depth == 0:
                start = i
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                prefix, inner = tree[:start], tree[start + 1 : i]
                items, level, last = [], 0, 0
                for j, d in enumerate(inner + ","):
                    if d == "{":
                        level += 1
                    elif d == "}":
                        level -= 1
                    elif d == "," and level == 0:
                        if inner[last:j]:
                            items.append(inner[last:j])
                        last = j + 1
                return [p for item in items for p in expand_use(prefix + item)]
    return [tree]


def resolve(modules, current, path, reexports=None):
    segments = path.split("::")
    head, rest = segments[0], segments[1:]
    if head == "crate":
        base = ()
    elif head == "self":
        base = current
    else:
        base = current
        while head == "super" and base:
            base, head = base[:-1], rest[0] if rest else ""
            rest = rest[1:]
            if head != "super":
                rest = [head] + rest
                break
    target = base
    for segment in rest:
        if target + (segment,) in modules:
            target = target + (segment,)
        else:
            # An item a facade re-exports (`pub use child::Item`) lives in the child: naming
            # it through the facade is no dependency on the facade's own code.
            seen = set()
            while reexports and segment in reexports.get(target, {}) and target not in seen:
                seen.add(target)
                target = reexports[target][segment]
                if target is None:
                    return None
            break
    return target


def reexports_of(modules, texts):
    """For each module, the items it re-exports from another module: name -> that module."""
    found = {}
    for module, text in texts.items():
        for m in PUB_USE.finditer(text):
            for path in expand_use(m.group(1)):
                segments = path.split("::")
                if segments[-1] in ("*", "self") or len(segments) < 2:
                    continue
                if segments[0] not in ("crate", "super", "self"):
                    if module + (segments[0],) not in modules:
                        # Another crate's item: naming it through us is no edge at all.
                        found.setdefault(module, {})[segments[-1]] = None
                        continue
                    segments = ["self"] + segments
                owner = resolve(modules, module, "::".join(segments[:-1]))
                if owner != module and owner + (segments[-1],) not in modules:
                    found.setdefault(module, {})[segments[-1]] = owner
    return found


def edges_of(root):
    files = sorted(root.rglob("*.rs"))
    modules = {module_of(root, f): f for f in files}
    modules = {m: f for m, f in modules.items() if not is_test(m)}
    texts = {m: strip_comments_and_tests(f.read_text()) for m, f in modules.items()}
    reexports = reexports_of(modules, texts)
    edges = {}
    for module, file in modules.items():
        # A re-export exposes the item; the facade's own code does not depend on it.
        text = PUB_USE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), texts[module])
        references = []
        for m in USE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            for path in expand_use(m.group(1)):
                if path.split("::")[0] in ("crate", "super", "self"):
                    references.append((path, line))
        for m in PATH.finditer(text):
            references.append((m.group(0), text.count("\n", 0, m.start()) + 1))
        # A child module named by its bare name (`child::X`, `use child::X`), as a parent may.
        children = [c for c in CHILD.findall(text) if c != "tests"]
        if children:
            bare = re.compile(r"(?<![\w:])(" + "|".join(children) + r")((?:::\w+)+)")
            for m in bare.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                references.append(("self::" + m.group(0), line))
        for path, line in references:
            target = resolve(modules, module, path, reexports)
            if target is not None and target != module and target in modules:
                edges.setdefault(module, {}).setdefault(target, f"{file}:{line}")
    return modules, edges


def cycles(modules, edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in modules:
        if v not in index:
            visit(v)
    return found


def name(module):
    return "::".join(module) or "crate"


def main():
    roots = [pathlib.Path(a) for a in sys.argv[1:]] or [pathlib.Path("dataplane/src")]
    failed = False
    for root in roots:
        modules, edges = edges_of(root)
        found = cycles(modules, edges)
        for component in found:
            failed = True
            members = set(component)
            print(f"{root}: import cycle among {', '.join(name(m) for m in component)}")
            for a in component:
                for b, where in sorted(edges.get(a, {}).items()):
                    if b in members:
                        print(f"  {name(a)} -> {name(b)}  ({where})")
        if not found:
            print(f"{root}: {len(modules)} modules, no import cycle")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
