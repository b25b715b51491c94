#!/usr/bin/env python3
"""Stage 2's data: contexts built once, with a frozen vision side, stored on
disk, so the decoder trains without rendering or encoding anything.

    python3 cache.py work/placed.pt work/cache --contexts 12000
    python3 cache.py work/placed.pt work/cache-val --contexts 512 --seed 7001

Each step of train.py draws 8 contexts (clip, moment, daemon settings:
`train.draw_moments`, the same distribution, a quarter single-event
scenes), renders the clips and runs the encoder with gradients on every
frame the gate passes: on two cores most of a step. When the vision side is
frozen none of that changes from one pass to the next, so it is done once
here: the clips are drawn as train.py draws them, the checkpoint's encoder
(no gradients) encodes the frames the pixel gate passes, `context.py`
builds the daemon's context (dropping at a random τ and reference, the
pyramid memory at a random size: `train.settings`), and each context is
stored as

- its prefix: the prompt's token ids and full-layout position ids up to
  its last visual token, and those visual tokens (float16, [n, HIDDEN]);
- questions about it: for every task one or more (question, answer) pairs
  from the clip's ground truth (`qa.ask`), each as the token ids and
  position ids of what follows the prefix (the question, the chat's
  assistant turn, the answer and its end), the prompt's length in it, and
  its task. The mixture is chosen when training (train_decoder.py), not
  here.

Shards of `--shard` contexts, `SHARD-NNNN.npz` (numpy, compressed), written
atomically; a shard that exists is skipped, so an interrupted run resumes.
Shard i holds the contexts of draw steps i*shard/8 ... (seeded by --seed and
the step), so the cache is the same whoever builds it.

The tokens are what the daemon's readout holds: with the vision side the
checkpoint's, `glimpse eval` of an export of a decoder trained here sees the
same inputs (up to float16 rounding here, and tract's rounding there).
"""

import argparse
import os
import time

import numpy as np
import torch

import context
import model as M
import qa
import train

# How many (question, answer) pairs to draw per task and context: the tasks
# whose questions vary with a random choice (which shape, yes or no) get
# more than one.
VARIANTS = {
    "describe": 1,
    "count": 1,
    "colour": 1,
    "where": 2,
    "when_appeared": 2,
    "when_left": 2,
    "last_appeared": 1,
    "last_left": 1,
    "rule": 3,
    "kind": 1,
}
TASKS = qa.TASKS + qa.LATER_TASKS
CONTEXTS_PER_STEP = 8


def load_frozen(path):
    tok, vocab = qa.make_tokenizer()
    state = torch.load(path, map_location="cpu", weights_only=False)["model"]
    net = M.ShapesModel(len(vocab), M.decoder_layers(state), M.has_place(state))
    net.load_state_dict(state)
    net.eval()
    return net, tok, vocab


def layout_questions(tok, vocab, items, pairs):
    """A prefix (token ids, position ids and visual rows up to the last
    visual token) and the questions after it, for (task, question, answer)
    triples about `items`."""
    image, eos = vocab["<image>"], vocab["<end_of_utterance>"]
    prefix, questions = None, []
    for task, question, answer in pairs:
        ids, positions, visual = context.layout(tok, image, items, question)
        answer_ids = tok.encode(answer, add_special_tokens=False).ids + [eos]
        start = max(positions) + 1
        full_ids = ids + answer_ids
        full_pos = positions + list(range(start, start + len(answer_ids)))
        # The prefix ends after the last image (however few of its cells
        # are present: a describe window may have none).
        raw = tok.encode(context.render_chat([it[0] for it in items], question), add_special_tokens=False).ids
        cut = len(raw) - raw[::-1].index(image) - len(items) + len(visual)
        if prefix is None:
            rows = np.stack([items[k][3][c] for k, c in visual]).astype(np.float16) if visual else np.zeros((0, M.HIDDEN), np.float16)
            prefix = (np.array(ids[:cut], np.uint8), np.array(positions[:cut], np.int32), rows)
        assert np.array_equal(prefix[0], ids[:cut])
        questions.append((TASKS.index(task), np.array(full_ids[cut:], np.uint8), np.array(full_pos[cut:], np.int32), len(ids) - cut))
    return prefix, questions


def build_context(net, tok, vocab, clip, now, cfg, rng, timed_now=False, window=0.0, moments=0):
    """One context's prefix and questions, as arrays: (prefix, questions,
    kept, is_window). With `window` (seconds), "what changed ?" is asked
    of the window readout instead (`Memory.window_readout`, one more
    context), and so at `moments` more moments of the clip (`train.pick_now`),
    each a context of its own with that one question."""
    end = now
    extra = []
    if window:
        extra = sorted({train.pick_now(clip, rng) for _ in range(moments)} - {now})
        end = max([now] + extra)
    frames = clip.frames[: end + 1]
    encoded = context.gated(frames, cfg["tau_pix"], M.GRID)
    with torch.no_grad():
        feats = net.vision.features(M.normalise(clip.frames[encoded])).numpy()
    seen_at = {}

    def visit(i, memory):
        if i == now:
            seen_at[i] = (memory.readout(clip.pts(now) if timed_now else None), memory.window_readout(clip.pts(i)) if window else None)
        elif i in extra:
            seen_at[i] = (None, memory.window_readout(clip.pts(i)))

    memory, _, masks = context.build_memory(
        frames,
        [clip.pts(i) for i in range(end + 1)],
        lambda idx: feats,
        M.GRID,
        M.HIDDEN,
        cfg["tau_pix"],
        cfg["tau"],
        cfg["reference"],
        cfg["similarity"],
        cfg["capacities"],
        encoded=encoded,
        visit=visit,
    )
    items = seen_at[now][0]
    pairs = []
    for task in TASKS:
        if window and task == "describe":
            continue
        asked = set()
        for _ in range(VARIANTS[task]):
            pair = None
            for _ in range(4):
                pair = qa.ask(clip, now, task, rng)
                if pair and pair[0] not in asked:
                    break
                pair = None
            if not pair:
                break
            asked.add(pair[0])
            pairs.append((task, str(pair[0]), pair[1]))
    kept = sum(int(m.sum()) for m in masks[: sum(1 for i in encoded if i <= now)]) / ((now + 1) * M.GRID * M.GRID)
    out = [(*layout_questions(tok, vocab, items, pairs), kept, False)]
    for i in [now] + extra if window else []:
        question, answer = qa.ask(clip, i, "describe", rng)
        out.append((*layout_questions(tok, vocab, seen_at[i][1], [("describe", str(question), answer)]), kept, True))
    return out


def write_shard(path, contexts):
    window = np.array([w for _, _, _, w in contexts], bool)
    contexts = [c[:3] for c in contexts]
    pre_ids = np.concatenate([p[0] for p, _, _ in contexts])
    pre_pos = np.concatenate([p[1] for p, _, _ in contexts])
    vis = np.concatenate([p[2] for p, _, _ in contexts])
    qs = [(c, q) for c, (_, questions, _) in enumerate(contexts) for q in questions]
    np.savez_compressed(
        path + ".tmp.npz",
        pre_ids=pre_ids,
        pre_pos=pre_pos,
        pre_off=np.cumsum([0] + [len(p[0]) for p, _, _ in contexts]),
        vis=vis,
        vis_off=np.cumsum([0] + [len(p[2]) for p, _, _ in contexts]),
        kept=np.array([k for _, _, k in contexts], np.float32),
        window=window,
        q_ctx=np.array([c for c, _ in qs], np.int32),
        q_task=np.array([q[0] for _, q in qs], np.uint8),
        q_ids=np.concatenate([q[1] for _, q in qs]),
        q_pos=np.concatenate([q[2] for _, q in qs]),
        q_off=np.cumsum([0] + [len(q[1]) for _, q in qs]),
        q_prompt=np.array([q[3] for _, q in qs], np.int32),
    )
    os.replace(path + ".tmp.npz", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpt", help="the checkpoint whose (frozen) vision side encodes the frames")
    ap.add_argument("out", help="folder of the shards")
    ap.add_argument("--contexts", type=int, default=12000)
    ap.add_argument("--shard", type=int, default=256, help="contexts per shard (a multiple of 8)")
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--single-events", type=float, default=0.25)
    ap.add_argument("--max-frames", type=int, default=48)
    ap.add_argument("--window", type=float, default=2.0, help='ask "what changed ?" of the window readout of the last WINDOW seconds (0: of the whole memory, as before)')
    ap.add_argument("--describe-moments", type=int, default=2, help="with --window, this many more describe contexts per context, at other moments of its clip")
    ap.add_argument("--timed-now", action="store_true", help='label the canvas "now at 14.0 s :" (the newest frame\'s time)')
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    net, tok, vocab = load_frozen(args.ckpt)
    steps = args.shard // CONTEXTS_PER_STEP
    for shard in range((args.contexts + args.shard - 1) // args.shard):
        path = os.path.join(args.out, f"shard-{shard:04d}.npz")
        if os.path.exists(path):
            continue
        started, contexts = time.time(), []
        for step in range(shard * steps, (shard + 1) * steps):
            rng = np.random.default_rng([args.seed, step, 7])
            for clip, now, cfg in train.draw_moments(args.seed, step, CONTEXTS_PER_STEP, args.single_events, args.max_frames):
                contexts.extend(build_context(net, tok, vocab, clip, now, cfg, rng, args.timed_now, args.window, args.describe_moments))
        write_shard(path, contexts)
        n_q = sum(len(q) for _, q, _, _ in contexts)
        main = [c for c in contexts if not c[3]]
        print(f"{path}: {len(main)} contexts and {len(contexts) - len(main)} describe windows, {n_q} questions, {np.mean([len(p[0]) for p, _, _, _ in main]):.0f} prefix tokens, kept {np.mean([k for _, _, k, _ in main]):.2f}, {len(main) / (time.time() - started):.1f} contexts/s", flush=True)


if __name__ == "__main__":
    main()
