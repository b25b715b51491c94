#!/usr/bin/env python3
"""Measures watch-rule states on the demo clip over many loops (issue 16).

Runs one glimpse with two cameras on the bundled demo clip, both asking
"is there a red shape?": `debounced` with the demo config's debounce and
`raw` with none (window 1: every answer decides), so that both meet the
same machine load in one run. Reads the events over MQTT (mosquitto_sub on
the embedded broker) and prints, per camera:

- rule state flips per minute (rule_on + rule_off events);
- per loop, the time from the red square leaving (28.0 s into the clip) to
  the rule going off, in clip time, and the event latency on top;
- how much of the time the published state matched the truth (red square
  present from 3.0 s to 28.0 s of each 60 s loop);
- snapshot bytes per event and JPEG encode time (from the debug log).

Usage: scripts/measure-rule-states.py [--loops 10] [--glimpse target/release/glimpse]
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP_S = 60.0  # 120 frames at 2 fps
LOOP_S = 59.5  # memory time advances by the last frame's time per loop
RED = (3.0, 28.0)  # the red square is in the scene from 3.0 s to 28.0 s


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(state, port, clip, model):
    camera = """
[cameras.{name}]
fps = 2.0
width = 128
height = 128
rules = ["is there a red shape?"]
[cameras.{name}.source]
kind = "file"
path = "{clip}"
loop = true
realtime = true
[cameras.{name}.dtd]
tau = 0.7
tau_pix = 0.02
[cameras.{name}.trigger]
drop_ratio_below = 0.95
rearm_drop_ratio_above = 0.98
cooldown_s = 5.0
rule_interval_s = 10.0
rule_recheck_s = 20.0
{debounce}
"""
    text = f"""[service]
state_dir = "{state}"
stats_interval_s = 10
[workers]
threads = 1
[model]
path = "{model}"
[mqtt]
broker = "embedded"
listen = "127.0.0.1:{port}"
discovery = false
"""
    text += camera.format(name="debounced", clip=clip, debounce="rule_window = 2\nrule_on_after = 1\nrule_off_after = 2")
    text += camera.format(name="raw", clip=clip, debounce="rule_window = 1\nrule_on_after = 1\nrule_off_after = 1")
    return text


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loops", type=int, default=10)
    p.add_argument("--glimpse", default=os.path.join(REPO, "target/release/glimpse"))
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="glimpse-rules-")
    port = free_port()
    path = os.path.join(work, "glimpse.toml")
    with open(path, "w") as f:
        f.write(config(os.path.join(work, "state"), port,
                       os.path.join(REPO, "models/shapes/clips/demo.mkv"),
                       os.path.join(REPO, "models/shapes/model")))
    env = dict(os.environ, RUST_LOG="info,glimpse::snapshot=debug")
    log = open(os.path.join(work, "glimpse.log"), "w")
    daemon = subprocess.Popen([args.glimpse, "run", "--config", path], stdout=log, stderr=subprocess.STDOUT, env=env)
    time.sleep(2)
    events_out = open(os.path.join(work, "events.txt"), "w")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "glimpse/+/event", "-v"],
                           stdout=events_out, stderr=subprocess.DEVNULL)
    seconds = args.loops * CLIP_S + 5
    print(f"running {args.loops} loops ({seconds:.0f} s); work folder {work}", file=sys.stderr)
    time.sleep(seconds)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=60)
    sub.terminate()
    events_out.close()

    events = {"debounced": [], "raw": []}
    with open(os.path.join(work, "events.txt")) as f:
        for line in f:
            topic, payload = line.split(" ", 1)
            e = json.loads(payload)
            if e.get("kind") in ("rule_on", "rule_off"):
                events[e["camera"]].append(e)
    minutes = seconds / 60.0
    for camera, evs in events.items():
        evs.sort(key=lambda e: e["end_s"])
        flips = len(evs)
        # The state over memory time, from the transitions.
        loops = args.loops
        off_delays, latencies = [], []
        for k in range(loops):
            leave = k * LOOP_S + RED[1]
            offs = [e for e in evs if e["kind"] == "rule_off" and leave <= e["end_s"] < (k + 1) * LOOP_S + RED[0]]
            if offs:
                off_delays.append(offs[0]["end_s"] - leave)
                latencies.append(offs[0]["latency_ms"] / 1000.0)
        # Agreement with the truth, sampled every 0.5 s of memory time.
        agree = total = 0
        state = "unknown"
        i = 0
        t = 0.0
        while t < loops * LOOP_S:
            while i < len(evs) and evs[i]["end_s"] <= t:
                state = "on" if evs[i]["kind"] == "rule_on" else "off"
                i += 1
            clip_t = t - (t // LOOP_S) * LOOP_S
            truth = "on" if RED[0] <= clip_t < RED[1] else "off"
            if state != "unknown":
                total += 1
                agree += state == truth
            t += 0.5
        print(f"{camera}: {flips} transitions in {minutes:.1f} min = {flips / minutes:.2f} flips/min; "
              f"off found in {len(off_delays)}/{loops} loops, "
              f"red left -> off: median {statistics.median(off_delays) if off_delays else float('nan'):.1f} s clip time "
              f"(min {min(off_delays, default=float('nan')):.1f}, max {max(off_delays, default=float('nan')):.1f}), "
              f"+ event latency median {statistics.median(latencies) if latencies else float('nan'):.1f} s; "
              f"state matches the truth {100.0 * agree / max(total, 1):.0f}% of the time")
        print("  transitions (clip time): " + ", ".join(
            f"{e['kind'][5:]}@{e['end_s'] - (e['end_s'] // LOOP_S) * LOOP_S:.1f}" for e in evs))
    sizes, encode = [], []
    with open(os.path.join(work, "glimpse.log")) as f:
        for line in f:
            if "snapshot stored" in line:
                b = re.search(r"bytes=(\d+)", line)
                u = re.search(r"encode_us=(\d+)", line)
                if b and u:
                    sizes.append(int(b.group(1)))
                    encode.append(int(u.group(1)) / 1000.0)
    if sizes:
        print(f"snapshots: {len(sizes)} stored, bytes per event median {statistics.median(sizes):.0f} "
              f"(min {min(sizes)}, max {max(sizes)}), JPEG encode median {statistics.median(encode):.2f} ms "
              f"(max {max(encode):.2f} ms)")


if __name__ == "__main__":
    main()
