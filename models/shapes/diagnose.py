"""How the model fails, read from a `glimpse eval --dump` file: which kind of
wrong each wrong answer is, for the tasks where the accuracy alone does not
say what to change (the descriptions, the "when" answers, the rules).

    cargo run --release -- eval --tau 0.5 --reference last_kept \\
        --memory 4,8,24 --no-full --dump /tmp/dump.jsonl
    python3 models/shapes/diagnose.py /tmp/dump.jsonl

Reads the clips' ground truth (every `*.json` under `--clips`, by default
`clips/`) for the events before each question's frame. Needs numpy
(through qa.py, for its window), as parity.py does.
"""

import argparse
import collections
import glob
import json
import os
import re

from qa import WINDOW_S

# The descriptions' grammar (qa.describe): clauses joined by " and ".
CLAUSE = re.compile(r"the (\w+) (\w+) (appeared|left|moved)(?: at the ([a-z ]+?))?(?= and |$)")


def clauses(sentence):
    """(colour, kind, verb, region or None) per clause."""
    return [(c, k, v, r or None) for c, k, v, r in CLAUSE.findall(sentence)]


def seconds(answer):
    """12.5 from "at 12.5 s" (or "at 12.5 s :"); None when not a time."""
    m = re.fullmatch(r"at (\d+(?:\.\d+)?) s(?: :)?", answer.strip())
    return float(m.group(1)) if m else None


def describe(rows, clips, out):
    """Each answered clause: true, true but in another region, an event
    that happened before the two-second window, the right shape with
    another verb, or a shape and verb that never happened; and the true
    clauses the answer left out."""
    for r in rows:
        clip = clips[r["clip"]]
        truth, answer = clauses(r["truth"]), clauses(r["answer"])
        true = {t[:3]: t for t in truth}
        # The window as qa.describe draws it; its sentence names at most two
        # of the window's events, so a third one said is true too.
        first = max(0, r["frame"] - int(WINDOW_S * clip["fps"]) + 1)
        window = {(c, k, v) for events in clip["events"][first : r["frame"] + 1] for v, c, k, _ in events}
        before = {(c, k, v) for events in clip["events"][:first] for v, c, k, _ in events}
        shapes = {(c, k) for c, k, _ in before} | {t[:2] for t in truth}
        for a in answer:
            if a[:3] in true:
                same_region = a[2] != "appeared" or a[3] == true[a[:3]][3]
                out["describe: clause true" if same_region else "describe: clause true, region wrong"] += 1
            elif a[:3] in window:
                out["describe: clause true (a third event of the window)"] += 1
            elif a[:3] in before:
                out["describe: clause happened before the window"] += 1
            elif a[:2] in shapes:
                out["describe: clause names a real shape, wrong verb"] += 1
            else:
                out["describe: clause never happened"] += 1
        said = {a[:3] for a in answer}
        out["describe: true clause left out"] += sum(t[:3] not in said for t in truth)
        if not truth:
            out["describe: truth 'nothing changed', answered " + ("the same" if not answer else "events")] += 1


def when(rows, out):
    """Whether a wrong time copies one of the prompt's labels, the newest
    one, or is not a label at all."""
    for r in rows:
        task = r["task"]
        got, truth = seconds(r["answer"]), seconds(r["truth"])
        labels = [s for s in (seconds(x) for x in r["labels"]) if s is not None]
        if r["right"]:
            out[f"{task}: right"] += 1
        elif got is None:
            out[f"{task}: wrong, not a time"] += 1
        elif labels and abs(got - max(labels)) < 0.05:
            out[f"{task}: wrong, the newest label"] += 1
        elif any(abs(got - s) < 0.05 for s in labels):
            out[f"{task}: wrong, an older label ({'before' if got < truth else 'after'} the truth)"] += 1
        else:
            out[f"{task}: wrong, not a label"] += 1
        # How far back the truth lies, in memory entries before "now":
        # an answer must find its entry among all the older ones.
        back = [len(labels) - i for i, s in enumerate(labels) if abs(s - truth) <= 1.0]
        age = "no entry within 1 s" if not back else next(f"{span} back" for span, b in AGES if back[-1] <= b)
        out[f"{task} by age, truth {age}: {'right' if r['right'] else 'wrong'}"] += 1


# Buckets for how far back a "when" answer's entry lies.
AGES = (("1 entry", 1), ("2-3 entries", 3), ("4-7 entries", 7), ("8-15 entries", 15), ("16+ entries", 10**6))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump", help="a `glimpse eval --dump` file (JSON lines)")
    ap.add_argument("--clips", default=os.path.join(os.path.dirname(__file__), "clips"), help="a folder of clips and their ground truth")
    args = ap.parse_args()
    clips = {}
    for path in glob.glob(os.path.join(args.clips, "**", "*.json"), recursive=True):
        with open(path) as f:
            clip = json.load(f)
        clips[clip["video"]] = clip
    with open(args.dump) as f:
        rows = [json.loads(line) for line in f]
    out = collections.Counter()
    describe([r for r in rows if r["task"] == "describe"], clips, out)
    when([r for r in rows if r["task"] in ("when_appeared", "when_left")], out)
    for r in rows:
        if r["task"] == "rule":
            out[f"rule: truth {r['truth']}, answered {r['answer'].split()[0] if r['answer'].split() else '(nothing)'}"] += 1
    print(f"{len(rows)} answers read")
    for key in sorted(out):
        print(f"{out[key]:5d}  {key}")


if __name__ == "__main__":
    main()
