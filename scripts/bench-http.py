#!/usr/bin/env python3
"""The cost of the status page and /metrics on a running pipeline: the CPU
the daemon spends per page refresh (/api/cameras, /api/events and the frame,
what the page fetches every 2 s) and per /metrics scrape, against its CPU
rate with nothing asking; one run, in CPU seconds rather than wall time, so
that a busy machine skews it less.

    cargo build --release
    scripts/bench-http.py target/release/glimpse config/glimpse.toml

It starts the daemon on CONFIG with GLIMPSE_HTTP_LISTEN=127.0.0.1:PORT
(default 18480) and stops it at the end; the config's state directory and
MQTT port are used as they are."""
import json, os, subprocess, sys, time, urllib.request
binary, cfg = sys.argv[1], sys.argv[2]
port = int(sys.argv[3]) if len(sys.argv) > 3 else 18480
env = dict(os.environ, GLIMPSE_HTTP_LISTEN=f"127.0.0.1:{port}")
p = subprocess.Popen([binary, "run", "--config", cfg], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
base = f"http://127.0.0.1:{port}"
def get(path):
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return r.read()
for _ in range(200):
    try:
        get("/healthz"); break
    except Exception:
        time.sleep(0.2)
time.sleep(8)
tick = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def idle_rate(seconds):
    t0, c0 = time.monotonic(), cpu(); time.sleep(seconds)
    return (cpu() - c0) / (time.monotonic() - t0)
def cost(n, fn):
    before = idle_rate(15)
    t0, c0 = time.monotonic(), cpu()
    for _ in range(n): fn()
    t1, c1 = time.monotonic(), cpu()
    after = idle_rate(15)
    rate = (before + after) / 2
    return ((c1 - c0) - rate * (t1 - t0)) / n, rate
frames, scrapes = [], []
def refresh():
    cams = json.loads(get("/api/cameras"))["cameras"]
    get("/api/events")
    frames.append(len(get(cams[0]["frame"])))
page, rate1 = cost(300, refresh)
scrape, rate2 = cost(300, lambda: scrapes.append(len(get("/metrics"))))
p.terminate(); p.wait()
rate = (rate1 + rate2) / 2
print(f"pipeline alone: {rate:.3f} CPU s/s")
print(f"per page refresh (cameras + events + frame): {page*1000:.2f} ms CPU; per /metrics scrape: {scrape*1000:.2f} ms CPU")
load = page / 2.0 + scrape / 15.0
print(f"page open (a refresh every 2 s) + a scrape every 15 s: {load:.4f} CPU s/s = {100*load/rate:.1f} % of the pipeline's CPU")
print(f"frame JPEG bytes: {min(frames)}-{max(frames)}; bytes per scrape: {min(scrapes)}-{max(scrapes)}")
