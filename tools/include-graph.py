#!/usr/bin/env python3
"""Prints which folders (rooms) of src/ include which: the layer graph of docs/ARCHITECTURE.md.

Run from the repository root: tools/include-graph.py. A line "a -> b c" means a file in src/a
includes a header of src/b and src/c. An arrow that points up the layers is a mistake to fix.
"""
import collections
import os
import re

edges = collections.defaultdict(set)
for root, _, files in os.walk("src"):
    for name in files:
        if not name.endswith((".cpp", ".hpp")):
            continue
        path = os.path.join(root, name)
        rel = os.path.relpath(path, "src")
        room = rel.split("/")[0] if "/" in rel else "main.cpp"
        with open(path, encoding="utf-8") as f:
            for m in re.finditer(r'#include "([^"/]+)/', f.read()):
                if m.group(1) != room:
                    edges[room].add(m.group(1))
for room in sorted(edges):
    print(f"{room} -> {' '.join(sorted(edges[room]))}")
