#!/usr/bin/env python3
"""Stage 2: trains the decoder (and the token embedding) on contexts cached
by cache.py, the vision side frozen.

    python3 train_decoder.py --init work/placed.pt --cache work/cache \\
        --val work/cache-val --out work/decoder

Resumes from OUT/ckpt.pt when it exists (weights, optimiser, EMA, step);
`kill PID` saves one and stops. Otherwise starts from `--init` (any checkpoint train.py, place.py or
import_onnx.py wrote; its vision side, place code included, is kept as is
and must be the one the cache was built with; `--layers N` grows its decoder
first, as train.py does). Runs until stopped (or
`--minutes`); a constant learning rate after a warm-up, so a run can be
stopped and resumed any number of times without a schedule to restart.

Why: train.py renders every step's clips and runs the vision encoder,
with gradients, over every frame the gate passes, then builds the contexts
in numpy; on two cores that is most of a step, and it buys nothing once the
vision side is right (probe.py) and frozen. Here a step is the decoder
alone, with torch's fused attention (model.Decoder.fused): 8 cached
contexts of about the same length (Cache.draw), each prefix (time labels and visual tokens) run
once, and `--questions` questions per context reading its keys and values
(as train.forward_batch does), the loss on the answer tokens with the kind
words weighted as in train.py.

The mixture (TASK_WEIGHTS) leans towards what the daemon publishes: the
descriptions ("what changed ?", asked by the trigger) and the watch rules;
the memory tasks after.

Every `--save-minutes`: OUT/ckpt.pt (to resume), OUT/ema.pt (an
exponential moving average of the weights, decay `--ema`, in the
checkpoint format export.py, monitor.py and probe.py read), and a line of
per-task exact-match accuracy (teacher-forced: every answer token the
argmax) on the validation cache `--val`, for the live weights and the EMA,
in OUT/train.log.
"""

import argparse
import copy
import glob
import os
import signal
import time

import numpy as np
import torch
from torch import nn

import cache
import model as M
import qa
import train
import world

TASKS = cache.TASKS
TASK_WEIGHTS = {
    "describe": 8,
    "rule": 6,
    "when_appeared": 3,
    "when_left": 3,
    "where": 2,
    "last_left": 2,
    "last_appeared": 1.5,
    "colour": 1.5,
    "kind": 1,
    "count": 0.75,
}


class Cache:
    """Every shard of a cache folder in memory."""

    def __init__(self, folder):
        self.shards = []
        for path in sorted(glob.glob(os.path.join(folder, "shard-*.npz"))):
            with np.load(path) as d:
                s = {k: d[k] for k in d.files}
            # Each context's questions, by task.
            s["by_ctx"] = [[] for _ in range(len(s["pre_off"]) - 1)]
            for j, c in enumerate(s["q_ctx"]):
                s["by_ctx"][c].append(j)
            self.shards.append(s)
        # Two kinds of context (cache.py): the whole memory, asked every
        # task but describe, and describe's window readouts.
        every = [(i, c) for i, s in enumerate(self.shards) for c in range(len(s["pre_off"]) - 1)]
        is_window = [bool(self.shards[i].get("window", np.zeros(c + 1, bool))[c]) for i, c in every]
        self.index = [x for x, w in zip(every, is_window) if not w]
        self.windows = [x for x, w in zip(every, is_window) if w]
        # The index in order of prefix length, to draw batches of contexts
        # of about the same length (`draw`): padding was a third of the
        # decoder's work with contexts drawn at random.
        lengths = np.array([self.shards[i]["pre_off"][c + 1] - self.shards[i]["pre_off"][c] for i, c in self.index])
        self.by_length = np.argsort(lengths, kind="stable")

    def draw(self, n, rng, window=64):
        """`n` distinct contexts (shard, context) of about the same length:
        a random one and others among its `window` neighbours in length."""
        at = int(rng.integers(len(self.index)))
        lo = max(0, min(at - window // 2, len(self.index) - window))
        pool = self.by_length[lo : lo + window]
        return [self.index[k] for k in rng.choice(pool, size=min(n, len(pool)), replace=False)]

    def draw_windows(self, n, rng):
        """`n` distinct describe windows (all about the same length)."""
        return [self.windows[k] for k in rng.choice(len(self.windows), size=min(n, len(self.windows)), replace=False)]

    def __len__(self):
        return len(self.index) + len(self.windows)

    def prefix(self, i, c):
        s = self.shards[i]
        a, b = s["pre_off"][c], s["pre_off"][c + 1]
        va, vb = s["vis_off"][c], s["vis_off"][c + 1]
        return s["pre_ids"][a:b].astype(np.int64), s["pre_pos"][a:b].astype(np.int64), s["vis"][va:vb]

    def question(self, i, j):
        s = self.shards[i]
        a, b = s["q_off"][j], s["q_off"][j + 1]
        return TASKS[s["q_task"][j]], s["q_ids"][a:b].astype(np.int64), s["q_pos"][a:b].astype(np.int64), int(s["q_prompt"][j])


def pick_questions(data, i, c, n, rng):
    """Up to `n` of a context's questions, drawn without replacement by
    TASK_WEIGHTS (a task's weight shared among its variants)."""
    s = data.shards[i]
    js = s["by_ctx"][c]
    tasks = [TASKS[s["q_task"][j]] for j in js]
    counts = {t: tasks.count(t) for t in set(tasks)}
    w = np.array([TASK_WEIGHTS[t] / counts[t] for t in tasks])
    pick = rng.choice(len(js), size=min(n, len(js)), replace=False, p=w / w.sum())
    return [js[k] for k in pick]


def batch_loss(net, data, chosen, kind_ids, image_id):
    """`chosen`: [(shard, context, [question indices])]. Returns the loss
    (kind words weighted), per question (task, exact), and the number of
    questions."""
    prefixes, suffixes = [], []
    for c, (i, ctx, js) in enumerate(chosen):
        prefixes.append(data.prefix(i, ctx))
        for j in js:
            task, ids, pos, prompt = data.question(i, j)
            suffixes.append((c, task, ids, pos, prompt))
    ids, prefix_mask = train.pad([p[0].tolist() for p in prefixes])
    pos, _ = train.pad([p[1].tolist() for p in prefixes])
    embeds = net.embed(ids)
    rows = torch.from_numpy(np.concatenate([p[2] for p in prefixes]).astype(np.float32))
    embeds = embeds.masked_scatter((ids == image_id).unsqueeze(-1), rows)
    past = net.decoder(embeds, prefix_mask, pos, *net.empty_past(len(prefixes)))[1:]
    which = torch.tensor([s[0] for s in suffixes])
    past = [kv.index_select(0, which) for kv in past]
    ids, suffix_mask = train.pad([s[2].tolist() for s in suffixes])
    pos, _ = train.pad([s[3].tolist() for s in suffixes])
    target = torch.full(ids.shape, -100, dtype=torch.long)
    for k, (_, _, q_ids, _, prompt) in enumerate(suffixes):
        target[k, prompt - 1 : len(q_ids) - 1] = torch.from_numpy(q_ids[prompt:])
    mask = torch.cat([prefix_mask.index_select(0, which), suffix_mask], 1)
    logits = net.decoder(net.embed(ids), mask, pos, *past)[0]
    per_token = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="none")
    flat = target.reshape(-1)
    weight = (flat != -100).float() * torch.where(torch.isin(flat, kind_ids), train.KIND_TOKEN_WEIGHT, 1.0)
    loss = (per_token * weight).sum() / weight.sum()
    with torch.no_grad():
        exact = ((logits.argmax(-1) == target) | (target == -100)).all(1).tolist()
    return loss, [(s[1], e) for s, e in zip(suffixes, exact)], len(suffixes)


def evaluate(net, data, kind_ids, image_id, contexts=128):
    """Teacher-forced exact match per task on the first `contexts` of the
    validation cache and its first 2 × `contexts` describe windows, every
    question of each."""
    right, total = {t: 0 for t in TASKS}, {t: 0 for t in TASKS}
    losses = []
    with torch.no_grad():
        index = data.index[:contexts] + data.windows[: 2 * contexts]
        for k in range(0, len(index), 8):
            chosen = [(i, c, data.shards[i]["by_ctx"][c]) for i, c in index[k : k + 8]]
            loss, results, _ = batch_loss(net, data, chosen, kind_ids, image_id)
            losses.append(loss.item())
            for task, ok in results:
                right[task] += ok
                total[task] += 1
    acc = {t: right[t] / total[t] for t in TASKS if total[t]}
    return float(np.mean(losses)), acc


def save(out, net, ema, opt, step, seen, minutes):
    state = {"model": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step, "seen": seen, "minutes": minutes}
    torch.save(state, os.path.join(out, "ckpt.pt.tmp"))
    os.replace(os.path.join(out, "ckpt.pt.tmp"), os.path.join(out, "ckpt.pt"))
    torch.save({"model": ema.state_dict(), "step": step}, os.path.join(out, "ema.pt.tmp"))
    os.replace(os.path.join(out, "ema.pt.tmp"), os.path.join(out, "ema.pt"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--init", help="checkpoint to start from when OUT has none")
    ap.add_argument("--cache", default="work/cache")
    ap.add_argument("--val", default="work/cache-val")
    ap.add_argument("--out", default="work/decoder")
    ap.add_argument("--contexts", type=int, default=8)
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--describe-share", type=float, default=0.4, help="share of the steps that are describe windows, when the cache has them")
    ap.add_argument("--windows", type=int, default=32, help="describe windows per describe step")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--minutes", type=float, default=0, help="stop after this many minutes (0: run until stopped)")
    ap.add_argument("--save-minutes", type=float, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--layers", type=int, default=0, help="grow the --init checkpoint's decoder to this many layers (model.grow; ignored when resuming)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    tok, vocab = qa.make_tokenizer()
    ckpt = os.path.join(args.out, "ckpt.pt")
    resumed = os.path.exists(ckpt)
    state = torch.load(ckpt if resumed else args.init, map_location="cpu", weights_only=False)
    had = M.decoder_layers(state["model"])
    if not resumed and args.layers > had:
        # Deeper, computing what the checkpoint computes (model.grow).
        state = {"model": M.grow(state["model"], args.layers), "step": state["step"]}
    net = M.ShapesModel(len(vocab), M.decoder_layers(state["model"]), M.has_place(state["model"]))
    net.load_state_dict(state["model"])
    for p in net.vision.parameters():
        p.requires_grad = False
    params = [p for n, p in net.named_parameters() if not n.startswith("vision.")]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    # torch's fused attention in training (model.Decoder.fused).
    net.decoder.fused = True
    ema = copy.deepcopy(net)
    step, seen, minutes = state["step"], 0, 0.0
    if resumed:
        opt.load_state_dict(state["opt"])
        ema.load_state_dict(state["ema"])
        seen, minutes = state["seen"], state["minutes"]
    first = step
    log = open(os.path.join(args.out, "train.log"), "a")

    def say(line):
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    data, val = Cache(args.cache), Cache(args.val)
    kind_ids = torch.tensor([vocab["▁" + k] for k in world.KINDS])
    image_id = vocab["<image>"]
    if not resumed:
        vloss, acc = evaluate(ema, val, kind_ids, image_id)
        say(f"val step {step} start loss {vloss:.3f} " + " ".join(f"{t} {100 * a:.0f}" for t, a in acc.items()))
    say(f"{'resumed' if resumed else 'started'} at step {step} ({minutes:.1f} min, {seen} examples so far); cache {len(data.index)} contexts and {len(data.windows)} describe windows, val {len(val)}")
    rng = np.random.default_rng([args.seed, step])
    net.train()
    started = last_save = time.time()
    cpu0 = time.process_time()
    stats, run_seen = [], 0
    # `kill PID` (SIGTERM) saves a checkpoint before stopping.
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    while not stop and (not args.minutes or time.time() - started < args.minutes * 60):
        if data.windows and rng.random() < args.describe_share:
            # Short prompts of one question each: more of them to a step.
            chosen = [(i, c, data.shards[i]["by_ctx"][c]) for i, c in data.draw_windows(args.windows, rng)]
        else:
            chosen = [(i, c, pick_questions(data, i, c, args.questions, rng)) for i, c in data.draw(args.contexts, rng)]
        # A warm-up at every start: a resumed optimiser's moments are
        # stale for the first steps after a pause as well.
        lr = args.lr * min(1.0, (step - first + 1) / args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        loss, results, b = batch_loss(net, data, chosen, kind_ids, image_id)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema.parameters(), net.parameters()):
                e.lerp_(p, 1 - args.ema)
        step += 1
        seen += b
        run_seen += b
        stats.append((loss.item(), np.mean([ok for _, ok in results])))
        if step % 25 == 0:
            s = np.mean(stats, 0)
            stats = []
            wall = time.time() - started
            say(f"step {step} lm {s[0]:.3f} exact {s[1]:.2f} lr {lr:.1e} {run_seen / wall:.1f} ex/s ({run_seen / (time.process_time() - cpu0):.1f} per CPU-second)")
        if time.time() - last_save > args.save_minutes * 60:
            minutes_now = minutes + (time.time() - started) / 60
            save(args.out, net, ema, opt, step, seen, minutes_now)
            last_save = time.time()
            vloss, acc = evaluate(ema, val, kind_ids, image_id)
            say(f"val step {step} ema loss {vloss:.3f} " + " ".join(f"{t} {100 * a:.0f}" for t, a in acc.items()))
            # cache.py may still be writing shards: take the new ones.
            if len(glob.glob(os.path.join(args.cache, "shard-*.npz"))) != len(data.shards):
                data = Cache(args.cache)
                say(f"cache now {len(data.index)} contexts and {len(data.windows)} describe windows")
    save(args.out, net, ema, opt, step, seen, minutes + (time.time() - started) / 60)
    say(f"stopped at step {step}")


if __name__ == "__main__":
    train.keep_freed_memory()
    main()
