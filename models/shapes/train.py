#!/usr/bin/env python3
"""Trains the shapes model on contexts built exactly as the daemon builds
them (context.py): frames through the pixel gate, the current encoder,
token dropping at a random τ and reference, the pyramid memory at a random
size, the readout with time labels and the canvas, then questions about it.

    python3 train.py --minutes 80 --out work/   # checkpoints to work/ckpt.pt

Resumes from work/ckpt.pt when it exists (weights and optimiser; the
learning-rate schedule starts again over the new run's minutes). Seeded.
Runs on a GPU unchanged (`--device auto`); there, worker processes render
the clips ahead of the training (`--workers`, all cores but two by default),
since the numpy side is then the slow part. The checkpoint loads on either
device. `--entry-head W` adds a training-only head that teaches each
remembered image's time label what happened there (EntryHead; off by
default). `--pointer W` trains one attention head of the last layer to
look at the right entry's time labels while a "when" answer spells the
time (pointer_loss; off by default).
"""

import argparse
import collections
import functools
import multiprocessing
import os
import sys
import time

import numpy as np
import torch
from torch import nn

import context
import make_clips
import model as M
import qa
import world

CAPACITIES = [(4, 8, 24), (2, 4, 8), (2, 2, 4), (4, 4, 12), (3, 6, 16)]
# The longest training clip, in frames (`--max-frames`; see draw_moments).
MAX_FRAMES = 32


def settings(rng):
    """A random daemon configuration, so the model holds up under the
    settings users choose."""
    full = rng.random() < 0.2
    return dict(
        tau_pix=float(rng.choice([0.0, 0.02, 0.02, 0.03])),
        tau=1.0 if full else float(rng.uniform(0.25, 0.9)),
        reference=str(rng.choice(["last_kept", "previous"])),
        similarity="centered",
        capacities=CAPACITIES[rng.integers(len(CAPACITIES))],
    )


def pick_now(clip, rng):
    """Half the time just after an event, so "what changed" sees changes as
    often as the daemon's trigger does."""
    n = len(clip.frames)
    events = [i for i in range(1, n) if clip.events[i]]
    if events and rng.random() < 0.5:
        return min(n - 1, int(rng.choice(events)) + int(rng.integers(0, 3)))
    return int(rng.integers(min(6, n - 1), n))


def single_event_clip(rng):
    """A still scene of 0-2 shapes where one shape appears or leaves: the
    daemon's commonest trigger (and the end-to-end test's case), where the
    description must name the shape's kind. The random world seldom gives
    the decoder such a clean view of one shape."""
    frames = int(rng.integers(8, 17))
    at = int(rng.integers(3, frames - 1))

    def still_shape(shapes):
        # The random world's shape (colour unique, size, place, tint), kept
        # still; None when it would overlap one already there.
        s = world._new_shape(rng, {o.colour for o in shapes})
        s.vx = s.vy = 0.0
        return None if world._overlaps(s, shapes) else s

    shapes = []
    for _ in range(int(rng.integers(0, 3))):
        s = still_shape(shapes)
        if s:
            shapes.append(s)
    script = {0: [("appear", s) for s in shapes]}
    if shapes and rng.random() < 0.35:
        script[at] = [("leave", shapes[int(rng.integers(len(shapes)))].colour)]
    else:
        new = None
        while new is None:
            new = still_shape(shapes)
        script[at] = [("appear", new)]
    clip = make_clips.scripted(int(rng.integers(0, 10**9)), frames, script)
    # Shapes present from the start are scenery, not events.
    clip.events[0] = []
    clip.offset = float(rng.integers(0, 1200)) / world.FPS
    return clip, min(frames - 1, at + int(rng.integers(0, 3)))


def draw_moments(seed, step, contexts, single_events, max_frames=MAX_FRAMES):
    """One step's contexts: clips rendered, moments and daemon settings
    drawn. Seeded by (seed, step) alone, so worker processes can draw steps
    ahead, in any order, and a resumed run draws what it would have.

    Clips run up to `max_frames`. A daemon that has run a while holds a
    full pyramid (36 entries at the default 4, 8, 24), as do the eval
    clips' later questions (60 frames); clips of at most 32 seldom fill
    it. Training on clips as long as the eval's was tried and not shipped
    (models/shapes/README.md, "Histories as long as the daemon's")."""
    rng = np.random.default_rng([seed, step])
    moments = []
    while len(moments) < contexts:
        if rng.random() < single_events:
            clip, now = single_event_clip(rng)
            moments.append((clip, now, settings(rng)))
            continue
        clip = world.make_clip(int(rng.integers(0, 10**9)), frames=int(rng.integers(12, max_frames + 1)), activity=float(rng.choice([0.0, 0.5, 1.0, 1.0, 1.5])))
        for _ in range(2):
            moments.append((clip, pick_now(clip, rng), settings(rng)))
    return moments[:contexts]


class Batches:
    """The steps' contexts, in step order, drawn `workers` processes ahead
    of the training (0: drawn inline). Rendering clips is numpy on one
    core: on a GPU it would be most of a step. On a 2-core CPU a worker
    gains nothing (torch has both cores). At most 2 × workers steps wait,
    so memory is bounded."""

    def __init__(self, seed, first_step, contexts, single_events, workers, max_frames):
        # A partial of a module-level function: it pickles to spawned workers.
        self.draw = functools.partial(draw_moments, seed, contexts=contexts, single_events=single_events, max_frames=max_frames)
        self.step = first_step
        self.pool = multiprocessing.get_context("spawn").Pool(workers) if workers else None
        self.ahead = collections.deque()
        for _ in range(2 * workers):
            self._submit()

    def _submit(self):
        self.ahead.append(self.pool.apply_async(self.draw, (self.step,)))
        self.step += 1

    def next(self):
        if self.pool is None:
            self.step += 1
            return self.draw(self.step - 1)
        self._submit()
        return self.ahead.popleft().get()

    def close(self):
        if self.pool is not None:
            self.pool.terminate()


def pick_task(rng):
    names = list(qa.WEIGHTS)
    w = np.array([qa.WEIGHTS[t] for t in names], float)
    return names[rng.choice(len(names), p=w / w.sum())]


class Examples:
    """Builds training batches: a few contexts (clip, moment, daemon
    settings), each asked several questions. The vision encoder runs once,
    with gradients, on every frame the pixel gate lets through; dropping
    and the memory decide from the same features, detached, so the context
    is the one the daemon would build with this encoder."""

    def __init__(self, tok, vocab):
        self.tok = tok
        self.image = vocab["<image>"]
        self.eos = vocab["<end_of_utterance>"]
        self.kind_ids = torch.tensor([vocab["▁" + k] for k in world.KINDS])
        # Ends each remembered image's trailing label; the "." inside a
        # time (12.5) is another token.
        self.period = vocab["▁."]
        self.at = vocab["▁at"]
        self.device = torch.device("cpu")

    def sequence(self, items, question, answer):
        ids, positions, visual = context.layout(self.tok, self.image, items, question)
        answer_ids = self.tok.encode(answer, add_special_tokens=False).ids + [self.eos]
        start = max(positions) + 1
        sources = items[0][4].shape[1]
        weights = np.stack([items[k][4][c] for k, c in visual]) if visual else np.zeros((0, sources), np.float32)
        return dict(
            ids=ids + answer_ids,
            positions=positions + list(range(start, start + len(answer_ids))),
            prompt=len(ids),
            weights=weights,
        )

    def contexts(self, net, moments):
        """`moments`: (clip, now, settings). Returns the vision outputs (with
        gradients) of every encoded frame, their labels, and per moment the
        readout items (sources index the encoded frames of that moment,
        offset into the returned features)."""
        gated = []
        for clip, now, cfg in moments:
            frames = clip.frames[: now + 1]
            gated.append(context.gated(frames, cfg["tau_pix"], M.GRID))
        pixels = M.normalise(np.concatenate([clip.frames[g] for (clip, _, _), g in zip(moments, gated)]))
        feats, kind, colour, region = net.vision(pixels.to(self.device))
        labels = np.concatenate([clip.labels[g] for (clip, _, _), g in zip(moments, gated)])
        # The daemon's context is built in numpy, on the CPU.
        detached = feats.detach().cpu().numpy()
        out, offset, kept, total = [], 0, 0, 0
        for (clip, now, cfg), g in zip(moments, gated):
            mine = detached[offset : offset + len(g)]
            memory, encoded, masks = context.build_memory(
                clip.frames[: now + 1],
                [clip.pts(i) for i in range(now + 1)],
                lambda idx, mine=mine: mine,
                M.GRID,
                M.HIDDEN,
                cfg["tau_pix"],
                cfg["tau"],
                cfg["reference"],
                cfg["similarity"],
                cfg["capacities"],
                track_sources=True,
                encoded=g,
            )
            out.append((memory.readout(), offset, len(g)))
            offset += len(g)
            kept += sum(int(m.sum()) for m in masks)
            total += (now + 1) * M.GRID * M.GRID
        return feats, (kind, colour, region), labels, out, kept / max(1, total)


# Most patches are background: weighting the shapes' patches up keeps the
# kind head from settling for "none" (kind is the hard part; colour is
# nearly free).
KIND_WEIGHTS = torch.tensor([1.0, 4.0, 4.0, 4.0])
# The same on the language side: a kind word is one token of ten in a
# description, and a decoder that names one kind for everything is right a
# third of the time, so the mean loss barely notices. Weighting the kind
# words up makes reading them out worth learning.
KIND_TOKEN_WEIGHT = 4.0


def aux_loss(heads, labels):
    """The vision's per-patch loss: kind (weighted to shapes), colour, and
    the region of the shape (shape patches only: a background patch has no
    answer to "where")."""
    kind, colour, region = heads
    labels = torch.from_numpy(labels).to(kind.device)
    weights = KIND_WEIGHTS.to(kind.device)
    ce = nn.functional.cross_entropy
    return (
        ce(kind.reshape(-1, 4), labels[:, 0].reshape(-1), weight=weights)
        + ce(colour.reshape(-1, 5), labels[:, 1].reshape(-1))
        + ce(region.reshape(-1, 10), labels[:, 2].reshape(-1), ignore_index=0)
    )


# Every (colour, kind) a shape can be, in a fixed order: the entry head's
# outputs are, per pair, "present", "appeared" and "left".
PAIRS = [(c, k) for c in world.COLOURS for k in world.KINDS]
# Off by default: tried at 0.5 from the shipped model, it did not move the
# "when" answers it was meant for (models/shapes/README.md, "An entry head").
ENTRY_WEIGHT = 0.0
# Appearing and leaving are rare targets: weighted up so the head cannot
# settle for "nothing happened".
EVENT_POS_WEIGHT = 5.0


class EntryHead(nn.Module):
    """Dense supervision of the decoder's reading across time (training
    only, not exported). At the period that ends each remembered image's
    trailing time label ("at 12.5 s : <image>at 12.5 s ."), from the
    residual stream half-way up the decoder, it predicts per (colour,
    kind) whether that shape is there, and whether it appeared or left
    since the entry before; at the context's last token, the same for the
    "what changed" window. The "when" answers failed at choosing the
    entry, not at copying its label: this teaches each entry's label token
    to hold what happened there, so that an answer could find it in one
    attention step. Tried, not shipped (models/shapes/README.md, "An entry
    head"): it learned, the "when" answers did not follow."""

    def __init__(self):
        super().__init__()
        self.entries = nn.Linear(M.HIDDEN, 3 * len(PAIRS))
        self.window = nn.Linear(M.HIDDEN, 3 * len(PAIRS))


def _events_between(clip, first, last):
    """(appeared, left) sets of (colour, kind) in frames first..last."""
    appeared, left = set(), set()
    for i in range(max(1, first), last + 1):
        for verb, colour, kind, _ in clip.events[i]:
            (appeared if verb == "appeared" else left).add((colour, kind))
    return appeared, left


def _target(clip, frame, appeared, left):
    present = {(s["colour"], s["kind"]) for s in clip.scenes[frame]}
    return [float(p in present) for p in PAIRS] + [float(p in appeared) for p in PAIRS] + [float(p in left) for p in PAIRS]


def label_seconds(label):
    """The time of a remembered image's label or of a "when" answer
    ("at 12.5 s :", "at 12.5 s" → 12.5)."""
    return float(label.split()[1])


def entry_targets(clip, now, items):
    """Targets for each remembered image (oldest first; the canvas has no
    trailing label) and for the "what changed" window ending at `now`."""
    rows, previous = [], 0
    for label, *_ in items[:-1]:
        frame = int(round((label_seconds(label) - clip.offset) * world.FPS))
        rows.append(_target(clip, frame, *_events_between(clip, previous + 1, frame)))
        previous = frame
    window = _target(clip, now, *_events_between(clip, qa.window_first(now), now))
    return rows, window


def entry_loss(logits, targets):
    """Binary cross-entropy over the presence and event outputs."""
    n = len(PAIRS)
    weight = torch.ones(3 * n, device=logits.device)
    weight[n:] = EVENT_POS_WEIGHT
    return nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=weight)


# Off by default until it earns shipping (models/shapes/README.md, "A
# pointer head").
POINTER_WEIGHT = 0.0
# The head of the decoder's last layer that the pointer loss trains: of
# the four, the one that already put the most attention on the right
# entry's labels (0.24 of it, at step 37 055).
POINTER_HEAD = 1


def entry_label_keys(ids, period, at, image):
    """Per remembered image (oldest first), the prefix positions of its two
    time labels ("at 12.5 s :" before the image, "at 12.5 s ." after it):
    what a "when" answer copies its digits from."""
    spans, start = [], 0
    for end in (i for i, t in enumerate(ids) if t == period):
        first = ids.index(at, start, end + 1)
        spans.append([i for i in range(first, end + 1) if ids[i] != image])
        start = end + 1
    return spans


def pointer_target(task, answer, items, spans, prompt, answer_len, digits=False):
    """For a "when" question: (the answer's positions that predict the
    time's digits, per position the prefix positions to look at); None
    otherwise. Those are the labels of the remembered entry nearest the
    truth, or None when no entry is within the scorer's one second (the
    gate skipped the frame, or the memory pooled it away). With `digits`,
    each position looks only at the digit it spells, in both of that
    entry's labels, and only an entry labelled with the truth's own time
    counts (another time's digits would contradict the answer)."""
    if task not in ("when_appeared", "when_left"):
        return None
    truth = label_seconds(answer)
    gaps = [abs(label_seconds(label) - truth) for label, *_ in items[:-1]]
    if not gaps or min(gaps) > (0.05 if digits else 1.0):
        return None
    span = spans[int(np.argmin(gaps))]
    # Answer "at 12.5 s" + end: tokens ▁at ▁ 1 2 . 5 ▁s <end>; token m is
    # predicted at prompt - 1 + m, and the digits are m = 2 .. len - 3.
    # Each label starts the same way ("▁at ▁ 1 2 . 5 ▁s"), so the digit
    # an answer token m spells sits at the label's start + m.
    digits_at = range(2, answer_len - 2)
    queries = [prompt - 1 + m for m in digits_at]
    if not digits:
        return queries, [span] * len(queries)
    # The span is "▁at ▁ 1 2 . 5 ▁s ▁: ▁" then "▁at ▁ 1 2 . 5 ▁s ▁.", each
    # label as long as the answer (the same time, "▁." for <end>).
    starts = [span[0], span[-answer_len]]
    return queries, [[start + m for start in starts] for m in digits_at]


def pointer_loss(watched, pointers):
    """-log of the attention mass that POINTER_HEAD puts on the right
    entry's labels while the answer spells the time, and that mass (a
    number to watch)."""
    losses, masses = [], []
    for j, (queries, keys) in pointers:
        rows = watched[j, POINTER_HEAD][queries]
        mass = rows.gather(1, torch.tensor(keys, device=rows.device)).sum(-1)
        losses.append(-torch.log(mass + 1e-6).mean())
        masses.append(mass.mean().item())
    if not losses:
        return torch.zeros((), device=watched.device), float("nan")
    return torch.stack(losses).mean(), float(np.mean(masses))


def train_vision(net, steps, lr, rng, log, device, heads_only=False):
    """Trains the vision side alone on the per-patch labels, on single
    frames (fast: no language model). The joint training's batches see
    too few frames for the encoder to learn kinds well (60% of shape
    patches after 3400 joint steps, against 94% after 600 steps of this).
    `heads_only` fits the auxiliary heads with the encoder frozen: after
    import_onnx.py the heads are random, and their first gradients would
    otherwise push the trained encoder."""
    params, frozen = [], []
    for n, p in net.vision.named_parameters():
        (params if not heads_only or n.startswith("aux_") else frozen).append(p)
    for p in frozen:
        p.requires_grad = False
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    for step in range(steps):
        if step % 400 == 0:  # a fresh pool of frames, so it cannot memorise them
            clips = [world.make_clip(int(rng.integers(0, 10**9)), frames=12, activity=1.5) for _ in range(400)]
            frames = np.concatenate([c.frames for c in clips])
            labels = np.concatenate([c.labels for c in clips])
        pick = rng.integers(0, len(frames), 64)
        loss = aux_loss(net.vision(M.normalise(frames[pick]).to(device))[1:], labels[pick])
        for g in opt.param_groups:
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 99:
            line = f"{'heads' if heads_only else 'vision'} step {step + 1} aux {loss.item():.4f}"
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()
    for p in frozen:
        p.requires_grad = True


def pad(rows):
    """Right-pads lists of ints with zeros into a [len(rows), longest] tensor
    and its mask."""
    longest = max(len(r) for r in rows)
    out = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for j, r in enumerate(rows):
        out[j, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[j, : len(r)] = 1
    return out, mask


def forward_batch(net, examples, moments, questions, rng, head=None, pointer=None):
    """Loss on the answer tokens (+ the vision's auxiliary loss, + the entry
    head's loss when `head` is given, + the pointer loss when `pointer` is
    "labels" or "digits", see pointer_target).

    A context's questions share everything before the question: its time
    labels and visual tokens, ~90% of each sequence. The decoder is causal,
    so that prefix runs once per context and its keys and values serve all
    the context's questions (as the daemon's KV cache does); the same loss
    as running each sequence whole, for a fraction of the decoder's work."""
    feats, heads, labels, built, kept = examples.contexts(net, moments)
    aux = aux_loss(heads, labels)
    prefixes, suffixes = [], []
    for c, ((clip, now, _), (items, offset, count)) in enumerate(zip(moments, built)):
        prefix = None
        for _ in range(questions):
            for _ in range(10):
                task = pick_task(rng)
                pair = qa.ask(clip, now, task, rng)
                if pair:
                    break
            else:
                # An empty scene early in a clip answers few tasks; "what
                # changed" always has an answer.
                task = "describe"
                pair = qa.ask(clip, now, task, rng)
            seq = examples.sequence(items, str(pair[0]), pair[1])
            # The prefix ends with the last visual token: the question's
            # words follow it.
            cut = len(seq["ids"]) - seq["ids"][::-1].index(examples.image)
            if prefix is None:
                rows = torch.from_numpy(seq["weights"]).to(feats.device) @ feats[offset : offset + count].reshape(-1, M.HIDDEN)
                prefix = dict(ids=seq["ids"][:cut], positions=seq["positions"][:cut], rows=rows)
                prefixes.append(prefix)
            assert seq["ids"][:cut] == prefix["ids"] and seq["positions"][:cut] == prefix["positions"]
            suffix = dict(context=c, ids=seq["ids"][cut:], positions=seq["positions"][cut:], prompt=seq["prompt"] - cut)
            if pointer:
                if "spans" not in prefix:
                    prefix["spans"] = entry_label_keys(prefix["ids"], examples.period, examples.at, examples.image)
                suffix["pointer"] = pointer_target(task, pair[1], items, prefix["spans"], suffix["prompt"], len(suffix["ids"]) - suffix["prompt"], pointer == "digits")
            suffixes.append(suffix)
    dev = examples.device
    # The prefixes: one row per context, padded on the right (masked).
    ids, prefix_mask = pad([p["ids"] for p in prefixes])
    pos, _ = pad([p["positions"] for p in prefixes])
    ids, prefix_mask, pos = ids.to(dev), prefix_mask.to(dev), pos.to(dev)
    embeds = net.embed(ids)
    image = ids == examples.image
    embeds = embeds.masked_scatter(image.unsqueeze(-1), torch.cat([p["rows"] for p in prefixes]).to(embeds.dtype))
    if head is not None:
        net.decoder.tap = net.decoder.layers // 2
    past = net.decoder(embeds, prefix_mask, pos, *net.empty_past(len(prefixes)))[1:]
    entry, recall = torch.zeros((), device=dev), float("nan")
    if head is not None:
        tapped = net.decoder.tapped
        net.decoder.tap = net.decoder.tapped = None
        entry, recall = entry_batch(tapped, head, examples, moments, built, prefixes)
    # The questions and answers, each after its context's keys and values.
    which = torch.tensor([s["context"] for s in suffixes], device=dev)
    past = [kv.index_select(0, which) for kv in past]
    ids, suffix_mask = pad([s["ids"] for s in suffixes])
    pos, _ = pad([s["positions"] for s in suffixes])
    target = torch.full(ids.shape, -100, dtype=torch.long)
    for j, s in enumerate(suffixes):
        # Token t predicts token t+1: targets are the answer tokens.
        target[j, s["prompt"] - 1 : len(s["ids"]) - 1] = torch.tensor(s["ids"][s["prompt"] :])
    ids, suffix_mask, pos, target = ids.to(dev), suffix_mask.to(dev), pos.to(dev), target.to(dev)
    mask = torch.cat([prefix_mask.index_select(0, which), suffix_mask], 1)
    if pointer:
        net.decoder.watch = net.decoder.layers - 1
    logits = net.decoder(net.embed(ids), mask, pos, *past)[0]
    point, mass = torch.zeros((), device=dev), float("nan")
    if pointer:
        watched = net.decoder.watched
        net.decoder.watch = net.decoder.watched = None
        point, mass = pointer_loss(watched, [(j, s["pointer"]) for j, s in enumerate(suffixes) if s.get("pointer")])
    per_token = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none")
    flat = target.reshape(-1)
    weight = (flat != -100).float() * torch.where(torch.isin(flat, examples.kind_ids.to(dev)), KIND_TOKEN_WEIGHT, 1.0)
    lm = (per_token * weight).sum() / weight.sum()
    with torch.no_grad():
        ok = ((logits.argmax(-1) == target) | (target == -100)).all(1).float().mean().item()
    length = float(np.mean([len(prefixes[s["context"]]["ids"]) + len(s["ids"]) for s in suffixes]))
    return lm, aux, entry, point, ok, kept, length, len(suffixes), recall, mass


def entry_batch(tapped, head, examples, moments, built, prefixes):
    """The entry head's loss on the residual stream `tapped` from the
    prefixes, and its recall of appearances and leavings (a number to
    watch)."""
    normed = M.rms_norm(tapped, 1.0)
    entries, entry_t, windows, window_t = [], [], [], []
    for c, ((clip, now, _), (items, _, _)) in enumerate(zip(moments, built)):
        ids = prefixes[c]["ids"]
        dots = [i for i, t in enumerate(ids) if t == examples.period]
        rows, window = entry_targets(clip, now, items)
        assert len(dots) == len(rows), (len(dots), len(rows))
        entries.append(normed[c, dots])
        entry_t += rows
        windows.append(normed[c, len(ids) - 1])
        window_t.append(window)
    dev = normed.device
    entry_t = torch.tensor(entry_t, device=dev)
    window_t = torch.tensor(window_t, device=dev)
    logits = head.entries(torch.cat(entries))
    loss = entry_loss(logits, entry_t) + entry_loss(head.window(torch.stack(windows)), window_t)
    n = len(PAIRS)
    events = entry_t[:, n:] > 0.5
    recall = ((logits[:, n:] > 0) & events).sum().item() / max(1, events.sum().item())
    return loss, recall


def save(path, net, opt, step, head):
    state = {"model": net.state_dict(), "opt": opt.state_dict(), "step": step}
    if head is not None:
        state["entry"] = head.state_dict()
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "work"))
    ap.add_argument("--contexts", type=int, default=8, help="contexts per batch")
    ap.add_argument("--questions", type=int, default=6, help="questions per context (they share its prefix, so each costs only its own tokens)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=-1, help="processes that render the clips ahead of the training; 0: inline (default on the CPU, where torch has the cores), -1: auto (on a GPU, all cores but two)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when there is one); checkpoints load on either")
    ap.add_argument("--vision-steps", type=int, default=0, help="first train the vision side alone for this many steps")
    ap.add_argument("--vision-lr", type=float, default=5e-4)
    ap.add_argument("--heads-steps", type=int, default=0, help="first fit the auxiliary heads alone, the encoder frozen, for this many steps (after import_onnx.py, whose heads are random)")
    ap.add_argument("--heads-lr", type=float, default=3e-3)
    ap.add_argument("--layers", type=int, default=0, help="decoder layers; more than the checkpoint has grows it, keeping what it computes (model.grow); 0: the checkpoint's, or model.LAYERS for a fresh start")
    ap.add_argument("--single-events", type=float, default=0.25, help="share of contexts from a still scene where one shape appears or leaves")
    ap.add_argument("--entry-head", type=float, default=ENTRY_WEIGHT, help="weight of the entry head's loss (0: off)")
    ap.add_argument("--pointer", type=float, default=POINTER_WEIGHT, help="weight of the pointer loss on the last layer's attention while a \"when\" answer spells its time (0: off)")
    ap.add_argument("--pointer-digits", action="store_true", help="the pointer loss looks, for each digit of the answer, at that digit in the right entry's labels (default: anywhere in them)")
    ap.add_argument("--max-frames", type=int, default=MAX_FRAMES, help="longest training clip, in frames (2 per second); the eval clips have 60")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    print(f"training on {device}", flush=True)
    tok, vocab = qa.make_tokenizer()
    ckpt = os.path.join(args.out, "ckpt.pt")
    state = torch.load(ckpt, map_location=device, weights_only=False) if os.path.exists(ckpt) else None
    had = M.decoder_layers(state["model"]) if state else None
    layers = args.layers or had or M.LAYERS
    if state and layers != had:
        # Deeper, computing what the checkpoint computes (model.grow); the
        # optimiser starts afresh below, as for any architecture change.
        state = {"model": M.grow(state["model"], layers), "step": state["step"]}
        print(f"decoder grown from {had} to {layers} layers", flush=True)
    # The place code (model.Vision.place) comes with the checkpoint
    # (place.py adds it).
    net = M.ShapesModel(len(vocab), layers, bool(state and M.has_place(state["model"]))).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    # The entry head trains beside the model and is not exported. It is
    # the optimiser's second parameter group, added before loading a
    # checkpoint that has one and after loading one from before the head,
    # so either resumes its optimiser.
    head = EntryHead().to(device) if args.entry_head > 0 else None
    saved_head = bool(state and "entry" in state)
    if head is not None and saved_head:
        head.load_state_dict(state["entry"])
        opt.add_param_group({"params": list(head.parameters())})
    step = 0
    if state:
        ours = net.state_dict()
        fits = {k: v for k, v in state["model"].items() if k in ours and ours[k].shape == v.shape}
        net.load_state_dict(fits, strict=False)
        step = state["step"]
        # import_onnx.py writes weights without an optimiser state.
        if "opt" in state and len(fits) == len(state["model"]) == len(ours) and len(state["opt"]["param_groups"]) == len(opt.param_groups):
            opt.load_state_dict(state["opt"])
            print(f"resumed at step {step}", flush=True)
        else:
            # An architecture change (e.g. the auxiliary heads moved): keep
            # what still fits and start the optimiser afresh.
            print(f"resumed at step {step}, optimiser afresh; new: {sorted(set(ours) - set(fits))}", flush=True)
    if head is not None and not saved_head:
        opt.add_param_group({"params": list(head.parameters())})
    rng = np.random.default_rng(args.seed * 1_000_003 + step)
    examples = Examples(tok, vocab)
    examples.device = device
    # Held-out clips use seeds >= 10^9; training seeds stay below.
    log = open(os.path.join(args.out, "train.log"), "a")
    if args.heads_steps:
        train_vision(net, args.heads_steps, args.heads_lr, rng, log, device, heads_only=True)
    if args.vision_steps:
        train_vision(net, args.vision_steps, args.vision_lr, rng, log, device)
    workers = args.workers if args.workers >= 0 else (max(1, (os.cpu_count() or 1) - 2) if device.type == "cuda" else 0)
    pointer = ("digits" if args.pointer_digits else "labels") if args.pointer > 0 else None
    batches = Batches(args.seed, step + 1, args.contexts, args.single_events, workers, args.max_frames)
    deadline = time.time() + args.minutes * 60
    started, seen = time.time(), 0
    stats = []
    run_steps = 0
    while time.time() < deadline:
        moments = batches.next()
        # Cosine over this run's time, after a short warm-up.
        progress = min(1.0, (time.time() - started) / (args.minutes * 60))
        lr = args.lr * 0.5 * (1 + np.cos(np.pi * progress)) * min(1.0, (run_steps + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = float(lr)
        lm, aux, entry, point, ok, kept, length, b, recall, mass = forward_batch(net, examples, moments, args.questions, rng, head, pointer)
        loss = lm + 0.5 * aux + args.entry_head * entry + args.pointer * point
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        run_steps += 1
        seen += b
        stats.append((lm.item(), aux.item(), ok, kept, length, entry.item(), recall, point.item(), mass))
        if step % 25 == 0:
            s, window, stats = np.mean(stats, 0), stats, []
            entry_line = f" entry {s[5]:.3f} recall {s[6]:.2f}" if head is not None else ""
            if args.pointer > 0:
                entry_line += f" point {s[7]:.3f} mass {np.nanmean([x[8] for x in window]):.2f}"
            line = f"step {step} lm {s[0]:.3f} aux {s[1]:.3f}{entry_line} exact {s[2]:.2f} kept {s[3]:.2f} len {s[4]:.0f} lr {lr:.2e} {seen / (time.time() - started):.1f} ex/s"
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()
        if step % 200 == 0:
            save(ckpt, net, opt, step, head)
    batches.close()
    save(ckpt, net, opt, step, head)
    print(f"done at step {step}", flush=True)


# glibc hands torch's freed buffers back to the kernel and faults them in
# again on the next step: on two cores that was ~22% of the training's CPU
# in the kernel (~100 000 page faults a second). Keeping freed memory in
# the process (it levels off, ~7 GB resident here) took the kernel share to
# ~1%. glibc reads these only at start-up, hence the re-exec.
MALLOC_KEEP = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}


def keep_freed_memory():
    missing = {k: v for k, v in MALLOC_KEEP.items() if k not in os.environ}
    if os.name == "posix" and missing:
        os.environ.update(missing)
        os.execv(sys.executable, [sys.executable, *sys.argv])


if __name__ == "__main__":
    keep_freed_memory()
    main()
