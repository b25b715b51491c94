#!/usr/bin/env python3
"""Check the relative links and #anchors of the Markdown files git tracks.

Usage: scripts/check-doc-links.py  (from anywhere in the repository).
Prints each broken link as FILE:LINE: TARGET and exits 1 if there is one.
Anchors follow GitHub's rule: lower case, punctuation dropped, spaces to -.
"""
import os, re, subprocess, sys

root = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout.strip()
os.chdir(root)
files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.md"], capture_output=True, text=True, check=True).stdout.split()


def prose(path):
    """(line number, text) of the lines outside code fences, inline code removed."""
    fence = False
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
        elif not fence:
            yield n, re.sub(r"`[^`]*`", "", line)


def anchors(path):
    seen, out = {}, set()
    for _, line in prose(path):
        m = re.match(r"#{1,6} (.*)", line)
        if m:
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1)).strip().lower()
            a = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
            out.add(a if a not in seen else f"{a}-{seen[a]}")
            seen[a] = seen.get(a, 0) + 1
    return out


bad = 0
for f in files:
    fence = False
    for n, line in enumerate(open(f, encoding="utf-8"), 1):
        if line.lstrip().startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", re.sub(r"`[^`]*`", "", line)):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, frag = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(f), path)) if path else f
            if not os.path.exists(dest) or (frag and (not dest.endswith(".md") or frag not in anchors(dest))):
                print(f"{f}:{n}: {target}")
                bad += 1
sys.exit(1 if bad else 0)
