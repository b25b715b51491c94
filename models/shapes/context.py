"""The daemon's context, built in numpy: pixel gate, token dropping, pyramid
memory, readout and prompt layout, exactly as `daemon/src/{dtd,memory,llm}`
build them (docs/architecture.md §3, §5). Training builds every example with this file,
and CI's parity test (tests/shapes.rs + parity.py) checks that the daemon
builds the same context for a clip, so training and serving cannot drift.

Numpy only (no torch): CI runs it with numpy and onnxruntime.

Besides the values, every visual token carries its *sources*: a weight per
(encoded frame, grid cell) token it averages, so that training can rebuild
the same context from features that carry gradients.
"""

from dataclasses import dataclass

import numpy as np

F32 = np.float32
# A describe prompt ("what changed ?") may read only the window before the
# newest frame (`Memory.window_readout`; the daemon's
# `MemoryBank::changed_since`), for a model folder that says
# `glimpse.describe_window_s` in its config.json. A push within EPS of the
# window's start belongs to the state before it (the daemon's WINDOW_SLACK).
EPS = 1e-3


def patch_change(a, b, rows, cols):
    """Mean |a - b| per patch in [0, 1]; uint8 frames [H, W, 3]."""
    h, w, _ = a.shape
    d = np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(axis=2)
    ys = np.minimum(np.arange(h) * rows // h, rows - 1)
    xs = np.minimum(np.arange(w) * cols // w, cols - 1)
    sums = np.zeros((rows, cols), np.int64)
    counts = np.zeros((rows, cols), np.int64)
    np.add.at(sums, (ys[:, None], xs[None, :]), d)
    np.add.at(counts, (ys[:, None], xs[None, :]), 3)
    return (sums.astype(F32) / (counts.astype(F32) * F32(255))).reshape(-1)


def gate(frames, tau_pix, grid):
    """Indices of the frames the pixel gate sends to the encoder. The first
    frame always goes; the reference is the last encoded frame."""
    encoded, reference = [], None
    for i, frame in enumerate(frames):
        if reference is None or (patch_change(reference, frame, grid, grid) >= F32(tau_pix)).any():
            encoded.append(i)
            reference = frame
    return encoded


def cosine(a, b):
    """As the daemon's: two zero vectors are alike (1), one is unlike all (0)."""
    na, nb = F32(np.dot(a, a)), F32(np.dot(b, b))
    if na == 0 and nb == 0:
        return F32(1)
    if na == 0 or nb == 0:
        return F32(0)
    return F32(np.dot(a, b)) / (np.sqrt(na) * np.sqrt(nb))


def cosines(a, b):
    """Row-wise cosine of [N, D] arrays, with the same zero rules."""
    dot = (a * b).sum(1)
    na, nb = (a * a).sum(1), (b * b).sum(1)
    out = dot / (np.sqrt(na) * np.sqrt(nb) + F32(1e-30))
    out = np.where((na == 0) & (nb == 0), F32(1), out)
    return np.where((na == 0) ^ (nb == 0), F32(0), out).astype(F32)


class Dropper:
    """Token dropping (docs/architecture.md §3): keep a token when its similarity with the
    reference is <= tau. `reference` is "previous" or "last_kept";
    `similarity` is "cosine" or "centered"."""

    def __init__(self, tau, reference="last_kept", similarity="centered"):
        self.tau, self.reference, self.similarity = F32(tau), reference, similarity
        self.last = None

    def keep(self, features):
        f = features.astype(F32)
        compared = f - f.mean(0, keepdims=True) if self.similarity == "centered" else f
        if self.last is None:
            mask = np.ones(len(f), bool)
            self.last = compared.copy()
            return mask
        mask = cosines(self.last, compared) <= self.tau
        if self.reference == "last_kept":
            self.last[mask] = compared[mask]
        else:
            self.last = compared.copy()
        return mask


@dataclass
class Entry:
    pts: float
    side: int
    cells: np.ndarray  # int, ascending
    tokens: np.ndarray  # [n, D]
    sources: np.ndarray  # [n, S] weights over source tokens, or None
    descriptor: np.ndarray = None


def pool(e):
    coarse = (e.side + 1) // 2
    targets = (e.cells // e.side // 2) * coarse + (e.cells % e.side) // 2
    uniq = np.unique(targets)
    tokens = np.stack([e.tokens[targets == t].sum(0) / F32((targets == t).sum()) for t in uniq]) if len(uniq) else e.tokens[:0]
    sources = None
    if e.sources is not None:
        sources = np.stack([e.sources[targets == t].sum(0) / F32((targets == t).sum()) for t in uniq]) if len(uniq) else e.sources[:0]
    return Entry(e.pts, coarse, uniq, tokens.astype(F32), sources)


def descriptor(tokens, dim):
    if len(tokens) == 0:
        return np.zeros(dim, F32)
    return (tokens.sum(0) / F32(len(tokens))).astype(F32)


class Memory:
    """The pyramid memory bank and the canvas (docs/architecture.md §5)."""

    def __init__(self, grid, dim, capacities=(4, 8, 24), sources=0, window=2.0):
        self.grid, self.dim, self.capacities = grid, dim, list(capacities)
        self.levels = [[], [], []]
        n = grid * grid
        self.canvas = np.zeros((n, dim), F32)
        self.canvas_src = np.zeros((n, sources), F32) if sources else None
        self.present = np.zeros(n, bool)
        self.canvas_pts = 0.0
        self.encoded = 0
        # What each recent push overwrote on the canvas, oldest first:
        # (pts, cells, old tokens, old sources, old presence), so that the
        # canvas as it was before a describe window can be rebuilt
        # (`window_readout`). Pushes older than the window are forgotten.
        self.undo = []
        self.window = window
        # The smallest gap between the best and second-best pair at any
        # eviction: below ~1e-5 another runtime's rounding may pick the
        # other pair (parity.py reports that as a tie, not a difference).
        self.closest_call = np.inf

    def push(self, pts, mask, tokens, sources=None):
        """Remembers an encoded frame: `mask` [n] of kept cells, `tokens`
        [n_kept, D], `sources` [n_kept, S] or None."""
        cells = np.flatnonzero(mask)
        old_src = self.canvas_src[cells].copy() if self.canvas_src is not None else None
        self.undo.append((pts, cells, self.canvas[cells].copy(), old_src, self.present[cells].copy()))
        while self.undo and self.undo[0][0] <= pts - self.window + EPS:
            self.undo.pop(0)
        self.canvas[cells] = tokens
        if self.canvas_src is not None:
            self.canvas_src[cells] = sources
        self.present[cells] = True
        if len(cells):
            self.canvas_pts = pts
        k = self.encoded
        self.encoded += 1
        level = 0 if k % 8 == 0 else (1 if k % 4 == 0 else 2)
        e = Entry(pts, self.grid, cells, tokens.astype(F32), sources)
        for _ in range(level):
            e = pool(e)
        e.descriptor = descriptor(e.tokens, self.dim)
        self._insert(level, e)

    def _insert(self, level, e):
        q = self.levels[level]
        at = sum(1 for x in q if x.pts <= e.pts)
        q.insert(at, e)
        if len(q) <= self.capacities[level]:
            return
        sims = [cosine(q[i].descriptor, q[i + 1].descriptor) for i in range(len(q) - 1)]
        best, victim = -np.inf, 0
        for i, s in enumerate(sims):
            if s > best:
                best, victim = s, i
        if len(sims) > 1:
            self.closest_call = min(self.closest_call, float(best - sorted(sims)[-2]))
        evicted = q.pop(victim)
        if level + 1 < 3:
            pooled = pool(evicted)
            pooled.descriptor = descriptor(pooled.tokens, self.dim)
            self._insert(level + 1, pooled)

    def readout(self, now_pts=None):
        """(label, grid, cells, tokens, sources) per item, oldest first,
        then the canvas: "now :", or "now at 14.0 s :" when `now_pts` (the
        newest frame's time) is given, so that the decoder can tell which
        entries fall inside the "what changed" window."""
        entries = sorted((e for level in self.levels for e in level), key=lambda e: e.pts)
        items = [(f"at {e.pts:.1f} s :", e.side * e.side, e.cells, e.tokens, e.sources) for e in entries]
        cells = np.flatnonzero(self.present)
        src = self.canvas_src[cells] if self.canvas_src is not None else None
        label = "now :" if now_pts is None else f"now at {now_pts:.1f} s :"
        items.append((label, self.grid * self.grid, cells, self.canvas[cells], src))
        return items

    def window_readout(self, now_pts, window=None):
        """describe's context: the cells that changed in the last `window`
        seconds before `now_pts`, as they were when the window began (every
        push newer than its start undone), labelled with that time, then as
        they are now. A cell changed when its token (or its presence)
        differs between the two; the rest of the scene is left out, as
        token dropping leaves out what did not change. What changed is
        then what the two images hold: no change, no tokens."""
        window = self.window if window is None else window
        assert window <= self.window + EPS, "the undo log holds only the memory's window"
        start = now_pts - window
        canvas, present = self.canvas.copy(), self.present.copy()
        src = self.canvas_src.copy() if self.canvas_src is not None else None
        for pts, cells, old, old_src, old_present in reversed(self.undo):
            if pts <= start + EPS:
                break
            canvas[cells] = old
            present[cells] = old_present
            if src is not None:
                src[cells] = old_src
        changed = (present != self.present) | (self.present & (canvas != self.canvas).any(1))
        before = np.flatnonzero(changed & present)
        now = np.flatnonzero(changed & self.present)
        n = self.grid * self.grid
        return [
            (f"at {max(start, 0.0):.1f} s :", n, before, canvas[before], src[before] if src is not None else None),
            ("now :", n, now, self.canvas[now], self.canvas_src[now] if self.canvas_src is not None else None),
        ]


def gated(frames, tau_pix, grid):
    """Indices of the frames that reach the encoder (all when tau_pix is 0)."""
    return gate(frames, tau_pix, grid) if tau_pix > 0 else list(range(len(frames)))


def build_memory(frames, pts, encode, grid, dim, tau_pix=0.02, tau=0.5, reference="last_kept", similarity="centered", capacities=(4, 8, 24), track_sources=False, encoded=None, visit=None, window=2.0):
    """Runs gate → encoder → dropping → memory over a clip, as the daemon
    does for one camera. `encode(indices)` returns features [len, grid², D]
    for the given frame indices; `encoded`, when given, is the gate's
    decision already made (`gated`); `visit(i, memory)`, when given, is
    called after every frame i, encoded or not; `window` is how far back
    `Memory.window_readout` can reach. Returns (memory, encoded indices,
    masks)."""
    if encoded is None:
        encoded = gated(frames, tau_pix, grid)
    features = encode(encoded)
    n = grid * grid
    memory = Memory(grid, dim, capacities, sources=len(encoded) * n if track_sources else 0, window=window)
    dropper = Dropper(tau, reference, similarity)
    masks = []
    for j, i in enumerate(encoded):
        mask = dropper.keep(features[j])
        masks.append(mask)
        src = None
        if track_sources:
            cells = np.flatnonzero(mask)
            src = np.zeros((len(cells), len(encoded) * n), F32)
            src[np.arange(len(cells)), j * n + cells] = 1
        memory.push(pts[i], mask, features[j][mask], src)
        if visit is not None:
            for k in range(i, encoded[j + 1] if j + 1 < len(encoded) else len(frames)):
                visit(k, memory)
    return memory, encoded, masks


# The chat template of SmolVLM2 as the daemon renders it for one user
# message of (label, image) pairs and a question (llm/respond.rs,
# llm/prompt.rs). A remembered image is labelled before and after: the
# decoder is causal, so only tokens after an image can see what it holds,
# and the time after it is one the answer to "when ..." can copy in one
# step (docs/architecture.md §5).
def render_chat(labels, question):
    parts = "".join(f"{label} <image>" + ("" if label.startswith("now") else f"{label[:-2]} . ") for label in labels)
    return f"<|im_start|>User: {parts}{question}<end_of_utterance>\nAssistant:"


def layout(tokenizer, image_token, items, question):
    """Token ids and position ids of the prompt: each image expands into its
    present cells at full-layout positions (llm/prompt.rs). Returns
    (ids, positions, visual) where visual lists (item index, cell index)
    in prompt order."""
    ids = tokenizer.encode(render_chat([it[0] for it in items], question), add_special_tokens=False).ids
    out_ids, positions, visual = [], [], []
    nxt, k = 0, 0
    for t in ids:
        if t != image_token:
            out_ids.append(t)
            positions.append(nxt)
            nxt += 1
            continue
        _, grid, cells, _, _ = items[k]
        for c_i, c in enumerate(cells):
            out_ids.append(image_token)
            positions.append(nxt + int(c))
            visual.append((k, c_i))
        nxt += grid
        k += 1
    if k != len(items):
        raise ValueError(f"the chat holds {k} images but {len(items)} were given")
    return out_ids, positions, visual
