"""The shapes world: a synthetic camera that the demo model learns to watch.

A textured, noisy background with slow lighting drift and the odd camera
jitter; 0-4 shapes (circle, square, triangle in red, green, blue, yellow)
that appear, move fast or slowly, stop and leave. Colours are unique among
the shapes present, so "the red square" names one shape. The renderer keeps
the ground truth (a scene graph per frame); `qa.py` turns it into questions.

One frame is one sample of the daemon's camera at `FPS` (2 per second, the
default `fps`): frame i is at stream time `offset + i / FPS`.

    python3 world.py OUT.png   # a contact sheet of one clip, to look at
"""

from dataclasses import dataclass, field

import numpy as np

SIZE = 128  # frame side in pixels, the encoder's input
GRID = 8  # token grid side: 16-pixel patches
FPS = 2
KINDS = ["circle", "square", "triangle"]
COLOURS = {
    "red": (0.86, 0.16, 0.14),
    "green": (0.16, 0.72, 0.22),
    "blue": (0.16, 0.30, 0.90),
    "yellow": (0.92, 0.84, 0.16),
}
MAX_SHAPES = 4
NOISE = 0.006  # sensor noise, std in [0, 1]: well under the gate's 0.02


@dataclass
class Shape:
    kind: str
    colour: str
    x: float
    y: float
    r: float
    vx: float = 0.0
    vy: float = 0.0
    tint: tuple = (0.0, 0.0, 0.0)

    def moving(self):
        return bool(self.vx != 0.0 or self.vy != 0.0)


@dataclass
class Clip:
    """Frames (uint8, [F, SIZE, SIZE, 3]) and per-frame ground truth."""

    frames: np.ndarray
    labels: np.ndarray  # [F, 3, GRID*GRID]: per patch kind, colour and region (0 = none)
    scenes: list  # per frame: list of dicts (kind, colour, x, y, r, moving)
    events: list  # per frame: list of (verb, colour, kind, where) that happened at that frame
    offset: float = 0.0
    meta: dict = field(default_factory=dict)

    def pts(self, i):
        return self.offset + i / FPS


def where(x, y):
    """The words for a position: "top left", "center", "bottom", ..."""
    col = "left" if x < SIZE / 3 else ("right" if x > 2 * SIZE / 3 else "")
    row = "top" if y < SIZE / 3 else ("bottom" if y > 2 * SIZE / 3 else "")
    words = " ".join(w for w in (row, col) if w)
    return words or "center"


def _background(rng):
    base = np.array(rng.choice([(0.42, 0.42, 0.40), (0.36, 0.31, 0.26), (0.33, 0.37, 0.30), (0.30, 0.35, 0.38), (0.48, 0.46, 0.42)]))
    base = base + rng.uniform(-0.04, 0.04, 3)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    tex = np.zeros((SIZE, SIZE))
    for _ in range(4):
        fx, fy = rng.uniform(0.5, 6, 2)
        tex += rng.uniform(0.01, 0.035) * np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    grain = rng.normal(0, 0.025, (SIZE, SIZE))
    # A few soft blobs, like furniture or shadows.
    for _ in range(rng.integers(0, 3)):
        cx, cy, s = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.08, 0.25)]
        tex += rng.uniform(-0.08, 0.08) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    return np.clip(base[None, None, :] + (tex + grain)[..., None], 0, 1).astype(np.float32)


_SS = 2  # supersampling for smooth edges


def _mask(shape):
    """Coverage in [0, 1] of `shape` per pixel, computed in its bounding box."""
    m = np.zeros((SIZE, SIZE))
    r = shape.r
    x0, x1 = max(0, int(shape.x - r) - 1), min(SIZE, int(shape.x + r) + 2)
    y0, y1 = max(0, int(shape.y - r) - 1), min(SIZE, int(shape.y + r) + 2)
    if x0 >= x1 or y0 >= y1:
        return m
    yy, xx = np.mgrid[y0 * _SS : y1 * _SS, x0 * _SS : x1 * _SS]
    dx, dy = (xx + 0.5) / _SS - shape.x, (yy + 0.5) / _SS - shape.y
    if shape.kind == "circle":
        inside = dx * dx + dy * dy <= r * r
    elif shape.kind == "square":
        inside = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)
    else:  # triangle pointing up: apex at -r, base at +0.8r
        t = (dy + r) / (1.8 * r)
        inside = (t >= 0) & (t <= 1) & (np.abs(dx) <= t * r)
    m[y0:y1, x0:x1] = inside.reshape(y1 - y0, _SS, x1 - x0, _SS).mean(axis=(1, 3))
    return m


def render(background, shapes, masks, light, rng, jitter=(0, 0)):
    img = background * light
    for s, m in zip(shapes, masks):
        m = m[..., None]
        colour = np.clip(np.array(COLOURS[s.colour]) + np.array(s.tint), 0, 1)
        img = img * (1 - m) + colour[None, None, :] * light * m
    if jitter != (0, 0):
        img = np.roll(img, jitter, axis=(0, 1))
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(NOISE)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


REGIONS = ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"]


def patch_labels(shapes, masks, jitter=(0, 0)):
    """Per token patch: the index (into KINDS, COLOURS, REGIONS) + 1 of the
    shape covering most of it, 0 where none covers a quarter. For the
    encoder's auxiliary heads. The region is the shape's (its centre's, as
    "where" answers it), not the patch's: every token of a shape should
    say where the shape is."""
    kind = np.zeros(GRID * GRID, np.int64)
    colour = np.zeros(GRID * GRID, np.int64)
    region = np.zeros(GRID * GRID, np.int64)
    best = np.full(GRID * GRID, 0.25)
    p = SIZE // GRID
    names = list(COLOURS)
    for s, m in zip(shapes, masks):
        m = np.roll(m, jitter, axis=(0, 1))
        cover = m.reshape(GRID, p, GRID, p).mean(axis=(1, 3)).reshape(-1)
        win = cover > best
        best[win] = cover[win]
        kind[win] = KINDS.index(s.kind) + 1
        colour[win] = names.index(s.colour) + 1
        region[win] = REGIONS.index(where(s.x, s.y)) + 1
    return kind, colour, region


def _new_shape(rng, used_colours):
    colour = rng.choice([c for c in COLOURS if c not in used_colours])
    r = rng.uniform(10, 17)
    s = Shape(
        kind=str(rng.choice(KINDS)),
        colour=str(colour),
        x=rng.uniform(r + 2, SIZE - r - 2),
        y=rng.uniform(r + 2, SIZE - r - 2),
        r=r,
        tint=tuple(rng.uniform(-0.05, 0.05, 3)),
    )
    if rng.random() < 0.3:
        _start_moving(s, rng)
    return s


def _start_moving(s, rng):
    speed = rng.uniform(2, 5) if rng.random() < 0.5 else rng.uniform(8, 14)
    a = rng.uniform(0, 2 * np.pi)
    s.vx, s.vy = speed * np.cos(a), speed * np.sin(a)


def _overlaps(s, shapes):
    return any((s.x - o.x) ** 2 + (s.y - o.y) ** 2 < (s.r + o.r + 2) ** 2 for o in shapes)


def make_clip(seed, frames=24, offset=None, activity=1.0):
    """Renders one clip. `activity` scales how often things happen (0 gives
    a scene that never changes after the first frame)."""
    rng = np.random.default_rng(seed)
    background = _background(rng)
    if offset is None:
        offset = float(rng.integers(0, 1200)) / FPS
    period, phase, depth = rng.uniform(20, 60), rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.05)
    shapes = []
    for _ in range(rng.integers(0, 4)):
        s = _new_shape(rng, {o.colour for o in shapes})
        if not _overlaps(s, shapes):
            shapes.append(s)
    p_appear, p_leave, p_stop, p_go = 0.10 * activity, 0.07 * activity, 0.15, 0.08 * activity
    out, labels, scenes, events = [], [], [], []
    for i in range(frames):
        happened = []
        if i > 0:
            for s in list(shapes):
                if rng.random() < p_leave:
                    shapes.remove(s)
                    happened.append(("left", s.colour, s.kind, where(s.x, s.y)))
            if len(shapes) < MAX_SHAPES and rng.random() < p_appear:
                s = _new_shape(rng, {o.colour for o in shapes})
                if not _overlaps(s, shapes):
                    shapes.append(s)
                    happened.append(("appeared", s.colour, s.kind, where(s.x, s.y)))
            for s in shapes:
                if s.moving():
                    s.x += s.vx
                    s.y += s.vy
                    if not s.r <= s.x <= SIZE - s.r:
                        s.vx = -s.vx
                        s.x = float(np.clip(s.x, s.r, SIZE - s.r))
                    if not s.r <= s.y <= SIZE - s.r:
                        s.vy = -s.vy
                        s.y = float(np.clip(s.y, s.r, SIZE - s.r))
                    if rng.random() < p_stop:
                        s.vx = s.vy = 0.0
                elif rng.random() < p_go:
                    _start_moving(s, rng)
        t = offset + i / FPS
        light = 1.0 + depth * np.sin(2 * np.pi * t / period + phase)
        jitter = (0, 0)
        if i > 0 and rng.random() < 0.02 * activity:
            jitter = tuple(int(v) for v in rng.integers(-2, 3, 2))
        masks = [_mask(s) for s in shapes]
        out.append(render(background, shapes, masks, light, rng, jitter))
        labels.append(np.stack(patch_labels(shapes, masks, jitter)))
        scenes.append(
            [dict(kind=s.kind, colour=s.colour, x=round(s.x, 1), y=round(s.y, 1), r=round(s.r, 1), moving=s.moving()) for s in shapes]
        )
        events.append(happened)
    return Clip(np.stack(out), np.stack(labels), scenes, events, offset, {"seed": int(seed), "jitter_p": 0.02 * activity})


def contact_sheet(clip, path, cols=8):
    """Writes the clip's frames side by side as a PNG (to look at)."""
    import zlib, struct

    f, h, w, _ = clip.frames.shape
    rows = (f + cols - 1) // cols
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, fr in enumerate(clip.frames):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = fr
    raw = b"".join(b"\0" + row.tobytes() for row in sheet)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", sheet.shape[1], sheet.shape[0], 8, 2, 0, 0, 0)))
        out.write(chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


if __name__ == "__main__":
    import sys

    clip = make_clip(int(sys.argv[2]) if len(sys.argv) > 2 else 1, frames=24)
    contact_sheet(clip, sys.argv[1])
    for i, ev in enumerate(clip.events):
        print(f"{clip.pts(i):6.1f} s  {len(clip.scenes[i])} shapes  {ev}")
