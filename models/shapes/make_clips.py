#!/usr/bin/env python3
"""Writes the bundled clips and their ground truth to `clips/`:

- `eval/dev/eval-NN.mkv` + `.json` (clips 1-4) and `eval/test/...` (clips
  5-8): held-out clips of the random world (seeds far from training's) with
  the questions `glimpse eval` asks and their answers. `dev` is for choosing
  checkpoints and settings; `test` is only reported, never chosen on;
- `demo.mkv` (+ json): a scripted minute that the default config loops;
- `appear.mkv` (+ json): a short scripted clip for the end-to-end test (a
  red square appears in a still scene);
- `parity.mkv` (+ json): a busy clip with a few questions, for the test
  that training and serving build the same context (parity.py).

Videos are H.264 in Matroska at 2 frames per second (one frame per sample
of the default `fps`), encoded by GStreamer's x264enc at a high quality so
that still patches stay under the pixel gate's threshold.

    python3 make_clips.py [OUT_DIR]
"""

import json
import os
import subprocess
import sys

import numpy as np

import qa
import world
from world import Clip, Shape

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL_CLIPS, EVAL_FRAMES = 8, 60
EVAL_SEED = 2_000_000_000  # training draws seeds below 10^9


def encode_video(frames, path):
    """Raw RGB frames → H.264 in Matroska, via gst-launch."""
    f, h, w, _ = frames.shape
    cmd = [
        "gst-launch-1.0", "-q", "fdsrc", "fd=0", "!",
        f"rawvideoparse", "format=rgb", f"width={w}", f"height={h}", f"framerate={world.FPS}/1", "!",
        "videoconvert", "!", "video/x-raw,format=Y444", "!",
        "x264enc", "pass=quant", "quantizer=10", "speed-preset=slow", "bframes=0", "key-int-max=20", "!",
        "matroskamux", "!", "filesink", f"location={path}",
    ]
    subprocess.run(cmd, input=frames.tobytes(), check=True)


def decode_video(path, size=world.SIZE):
    """Frames as GStreamer decodes them to RGB: the tail of a `file`
    camera's pipeline (capture/gst.rs), without the sampling."""
    cmd = [
        "gst-launch-1.0", "-q", "filesrc", f"location={path}", "!", "decodebin", "!",
        "videoconvert", "!", "videoscale", "!",
        f"video/x-raw,format=RGB,width={size},height={size},pixel-aspect-ratio=1/1", "!", "fdsink", "fd=1",
    ]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def questions(clip, rng, every=5, tasks=qa.TASKS, after_events=True, later=None):
    """Questions at a few points of the clip: every `every` frames and just
    after each event; each applicable task once per point. With `later` (a
    random stream of their own), then the tasks added since the clips were
    first made (qa.LATER_TASKS), so the older questions stay the same."""
    points = set(range(6, len(clip.frames), every))
    if after_events:
        points |= {min(len(clip.frames) - 1, i + 1) for i, e in enumerate(clip.events) if e and i > 0}
    out = []
    for n in sorted(points):
        asks = [(task, rng) for task in tasks] + [(task, later) for task in (qa.LATER_TASKS if later is not None else [])]
        for task, stream in asks:
            pair = qa.ask(clip, n, task, stream)
            if pair:
                out.append({"frame": n, "task": task, "question": str(pair[0]), "answer": pair[1]})
    return out


def scripted(seed, frames, script):
    """A clip of the world with a script instead of chance: `script` maps a
    frame to actions ("appear", Shape) / ("leave", colour) /
    ("move", colour, vx, vy) / ("stop", colour)."""
    rng = np.random.default_rng(seed)
    background = world._background(rng)
    shapes, out, labels, scenes, events = [], [], [], [], []
    for i in range(frames):
        happened = []
        for action in script.get(i, []):
            if action[0] == "appear":
                s = action[1]
                shapes.append(s)
                happened.append(("appeared", s.colour, s.kind, world.where(s.x, s.y)))
            elif action[0] == "leave":
                s = next(s for s in shapes if s.colour == action[1])
                shapes.remove(s)
                happened.append(("left", s.colour, s.kind, world.where(s.x, s.y)))
            elif action[0] == "move":
                s = next(s for s in shapes if s.colour == action[1])
                s.vx, s.vy = action[2], action[3]
            elif action[0] == "stop":
                s = next(s for s in shapes if s.colour == action[1])
                s.vx = s.vy = 0.0
        if i > 0:
            for s in shapes:
                if s.moving() and i not in script:
                    s.x = float(np.clip(s.x + s.vx, s.r, world.SIZE - s.r))
                    s.y = float(np.clip(s.y + s.vy, s.r, world.SIZE - s.r))
        masks = [world._mask(s) for s in shapes]
        out.append(world.render(background, shapes, masks, 1.0, rng))
        labels.append(np.stack(world.patch_labels(shapes, masks)))
        scenes.append([dict(kind=s.kind, colour=s.colour, x=round(s.x, 1), y=round(s.y, 1), r=round(s.r, 1), moving=s.moving()) for s in shapes])
        events.append(happened)
    return Clip(np.stack(out), np.stack(labels), scenes, events, 0.0, {"seed": seed, "scripted": True})


def write(clip, out, name, rng, **ask):
    video = f"{name}.mkv"
    encode_video(clip.frames, os.path.join(out, video))
    truth = {
        "video": video,
        "fps": world.FPS,
        "size": world.SIZE,
        "frames": len(clip.frames),
        "meta": clip.meta,
        "questions": questions(clip, rng, **ask),
        "events": [[list(e) for e in ev] for ev in clip.events],
        "scenes": clip.scenes,
    }
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump(truth, f, indent=1)
        f.write("\n")
    return truth


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "clips")
    for split in ("dev", "test"):
        os.makedirs(os.path.join(out, "eval", split), exist_ok=True)
    rng, later = np.random.default_rng(7), np.random.default_rng(8)
    total = 0
    for k in range(EVAL_CLIPS):
        clip = world.make_clip(EVAL_SEED + k, frames=EVAL_FRAMES, offset=0.0, activity=1.0)
        split = "dev" if k < EVAL_CLIPS // 2 else "test"
        folder = os.path.join(out, "eval", split)
        total += len(write(clip, folder, f"eval-{k + 1:02d}", rng, later=later)["questions"])
    demo = {
        6: [("appear", Shape("square", "red", 30, 30, 14))],
        16: [("appear", Shape("circle", "blue", 98, 96, 14))],
        24: [("move", "blue", -6.0, -3.0)],
        34: [("stop", "blue")],
        44: [("appear", Shape("triangle", "yellow", 64, 100, 15))],
        56: [("leave", "red")],
        70: [("appear", Shape("circle", "green", 100, 28, 13))],
        84: [("leave", "blue")],
        100: [("leave", "yellow")],
        110: [("leave", "green")],
    }
    write(scripted(11, 120, demo), out, "demo", rng)
    write(scripted(12, 12, {5: [("appear", Shape("square", "red", 40, 44, 16))]}), out, "appear", rng)
    # For the parity test: a busy clip, a few questions (each is a model call
    # in a debug build).
    busy = world.make_clip(EVAL_SEED + 100, frames=30, offset=0.0, activity=2.5)
    write(busy, out, "parity", rng, every=7, tasks=["describe", "when_appeared"], after_events=False)
    print(f"wrote {out}: {EVAL_CLIPS} eval clips, {total} questions; demo; appear")


if __name__ == "__main__":
    main()
