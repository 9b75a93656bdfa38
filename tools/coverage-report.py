#!/usr/bin/env python3
"""The line coverage of src/ from a coverage build's counters (`make coverage`).

tools/coverage-report.py BUILD_DIR OUT.md: prints gcovr's summary line ("lines: NN.N% (x out of
y)") and writes OUT.md: the coverage of each folder of src/ and of each file, lowest first.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

build, out = sys.argv[1], sys.argv[2]
common = ["gcovr", "--root", ".", "--filter", "src/", "--object-directory", build]
# The report itself goes to a scratch file, not /dev/null: after a coverage run here /dev/null
# was found a regular file (cause not pinned down), and a tool run as root must not risk it.
with tempfile.TemporaryDirectory() as scratch:
    summary = subprocess.run(common + ["--print-summary", "-o", os.path.join(scratch, "report.txt")],
                             check=True, capture_output=True, text=True).stdout
print(summary.strip())
files = json.loads(subprocess.run(common + ["--json-summary"], check=True, capture_output=True,
                                  text=True).stdout)["files"]
folders = collections.defaultdict(lambda: [0, 0])
for f in files:
    parts = f["filename"].split("/")
    folder = "/".join(parts[:2]) + "/" if len(parts) > 2 else f["filename"]
    folders[folder][0] += f["line_covered"]
    folders[folder][1] += f["line_total"]

def pct(covered, total):
    return 100.0 * covered / total if total else 100.0

lines = ["# Line coverage of src/", "",
         f"`make coverage` on {time.strftime('%Y-%m-%d')}: the unit and integration tests of a",
         "`--coverage` build (the docker tests drive a release build and are not counted).", "",
         "```text", summary.strip(), "```", "",
         "| folder | lines covered | lines | coverage |", "|---|---|---|---|"]
for folder, (c, t) in sorted(folders.items(), key=lambda kv: pct(*kv[1])):
    lines.append(f"| `{folder}` | {c} | {t} | {pct(c, t):.1f}% |")
lines += ["", "Each file, lowest first:", "", "| file | lines | coverage |", "|---|---|---|"]
for f in sorted(files, key=lambda f: pct(f["line_covered"], f["line_total"])):
    lines.append(f"| `{f['filename']}` | {f['line_total']} | {pct(f['line_covered'], f['line_total']):.1f}% |")
with open(out, "w", encoding="utf-8") as fh:
    fh.write("\n".join(lines) + "\n")
print(f"coverage per folder and file: {out}")
