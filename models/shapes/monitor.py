#!/usr/bin/env python3
"""Quick per-task accuracy of a checkpoint on fresh held-out clips, in
torch (greedy decoding), to watch training, then the end-to-end test's
case: one shape appearing in a still scene, is its colour and kind named?
The benchmark that counts is `glimpse eval` (the daemon's own pipeline on
the committed clips).

    python3 monitor.py work/ckpt.pt [examples per task] [appearances]
"""

import sys

import numpy as np
import torch

import make_clips
import model as M
import qa
import train
import world


def greedy(net, items, feats, examples, question, limit=24):
    seq = examples.sequence(items, question, "")
    ids, pos = seq["ids"][: seq["prompt"]], seq["positions"][: seq["prompt"]]
    visual = torch.from_numpy(seq["weights"]) @ feats
    out = []
    for _ in range(limit):
        t = torch.tensor([ids + out])
        emb = net.embed(t)
        img = t == examples.image
        if img.any():
            emb = emb.masked_scatter(img.unsqueeze(-1), visual)
        p = torch.tensor([pos + list(range(pos[-1] + 1, pos[-1] + 1 + len(out)))])
        logits = net.decoder(emb, torch.ones_like(t), p, *net.empty_past(1))[0]
        nxt = int(logits[0, -1].argmax())
        if nxt == examples.eos:
            break
        out.append(nxt)
    return examples.tok.decode(out).strip()


def main():
    torch.set_num_threads(1)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    tok, vocab = qa.make_tokenizer()
    state = torch.load(sys.argv[1], weights_only=False)["model"]
    net = M.ShapesModel(len(vocab), M.decoder_layers(state), M.has_place(state))
    net.load_state_dict(state)
    net.eval()
    ex = train.Examples(tok, vocab)
    rng = np.random.default_rng(12345)
    cfg = dict(tau_pix=0.02, tau=0.5, reference="last_kept", similarity="centered", capacities=(4, 8, 24))
    with torch.no_grad():
        for task in qa.TASKS + qa.LATER_TASKS:
            right, shown = 0, []
            k = 0
            while k < n:
                clip = world.make_clip(3_000_000_000 + int(rng.integers(10**6)), frames=32)
                now = train.pick_now(clip, rng)
                pair = qa.ask(clip, now, task, rng)
                if not pair:
                    continue
                k += 1
                feats, _, _, built, _ = ex.contexts(net, [(clip, now, cfg)])
                items = built[0][0]
                answer = greedy(net, items, feats.reshape(-1, M.HIDDEN), ex, str(pair[0]))
                ok = qa.score(task, answer, pair[1])
                right += ok
                if not ok and len(shown) < 2:
                    shown.append(f"{pair[0]!r}: {answer!r} (want {pair[1]!r})")
            print(f"{task:14s} {right}/{n}  " + " | ".join(shown), flush=True)
        appearances(net, ex, cfg, int(sys.argv[3]) if len(sys.argv) > 3 else 30)


def appearances(net, ex, cfg, n):
    """Scripted single appearances (as in clips/appear.mkv): how often the
    description names the colour, the kind, and is right word for word."""
    rng = np.random.default_rng(5)
    right = {"colour": 0, "kind": 0, "exact": 0}
    for t in range(n):
        kind, colour = str(rng.choice(world.KINDS)), str(rng.choice(list(world.COLOURS)))
        r = float(rng.uniform(11, 16))
        x, y = rng.uniform(r + 2, world.SIZE - r - 2, 2)
        clip = make_clips.scripted(100 + t, 8, {5: [("appear", world.Shape(kind, colour, float(x), float(y), r))]})
        feats, _, _, built, _ = ex.contexts(net, [(clip, 5, cfg)])
        answer = greedy(net, built[0][0], feats.reshape(-1, M.HIDDEN), ex, "what changed ?")
        right["colour"] += colour in answer
        right["kind"] += kind in answer
        right["exact"] += answer == qa.describe(clip, 5)
    print("appearances   " + "  ".join(f"{k} {v}/{n}" for k, v in right.items()), flush=True)


if __name__ == "__main__":
    main()
