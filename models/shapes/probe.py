#!/usr/bin/env python3
"""Linear probes on what the decoder reads: the vision side's output (the
connector's, one token per 16×16 patch), for a model folder. Where a probe
reads a property well from the tokens and the model still answers it
badly, the decoder is the bottleneck; where the probe fails too, the vision
side is.

    python3 probe.py model [frames]
    python3 probe.py work/ckpt.pt [frames]   # a training checkpoint

Per patch covered by a shape (fresh clips of the world, seeds apart from
training's and the eval's): its kind, its colour, the region word of the
patch's centre (`world.where`: 9 regions), and the region of the shape that
covers it (what "where is the red square ?" asks). A softmax-regression probe is
fitted on 80% of the frames' patches and scored on the other 20%; beside it,
the majority class. Also, on every patch: is it covered by a shape at all.
"""

import sys

import numpy as np
import torch
from torch import nn

import import_onnx
import model as M
import qa
import world



def fit(x, y, classes, train, test):
    """Test accuracy of a softmax regression on standardised features."""
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    x = (x - mu) / sd
    xt, yt = torch.from_numpy(x[train]).float(), torch.from_numpy(y[train]).long()
    probe = nn.Linear(x.shape[1], classes)
    opt = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(400):
        opt.zero_grad()
        nn.functional.cross_entropy(probe(xt), yt).backward()
        opt.step()
    with torch.no_grad():
        pred = probe(torch.from_numpy(x[test]).float()).argmax(1).numpy()
    return float((pred == y[test]).mean())


def main():
    torch.set_num_threads(1)
    folder = sys.argv[1]
    frames = int(sys.argv[2]) if len(sys.argv) > 2 else 1200
    _, vocab = qa.make_tokenizer()
    if folder.endswith(".pt"):
        # A training checkpoint (train.py, place.py, train_decoder.py).
        state = torch.load(folder, map_location="cpu", weights_only=False)["model"]
        net = M.ShapesModel(len(vocab), M.decoder_layers(state), M.has_place(state))
        net.load_state_dict(state)
    else:
        net = M.ShapesModel(len(vocab), import_onnx.folder_layers(folder), import_onnx.folder_place(folder))
        import_onnx.load_folder(net, folder)
    net.eval()
    rng = np.random.default_rng(5)
    clips = [world.make_clip(int(rng.integers(2 * 10**9, 3 * 10**9)), frames=12, activity=1.5) for _ in range(frames // 12)]
    pixels = np.concatenate([c.frames for c in clips])
    labels = np.concatenate([c.labels for c in clips])  # [F, 2, 64]
    with torch.no_grad():
        feats = torch.cat([net.vision(M.normalise(pixels[i : i + 64]))[0] for i in range(0, len(pixels), 64)]).numpy()
    n = len(pixels)
    cell = M.IMAGE / M.GRID
    centres = [(((p % M.GRID) + 0.5) * cell, ((p // M.GRID) + 0.5) * cell) for p in range(M.GRID * M.GRID)]
    region = np.array([world.REGIONS.index(world.where(x, y)) for x, y in centres])
    frame = np.repeat(np.arange(n), M.GRID * M.GRID)
    x = feats.reshape(-1, M.HIDDEN)
    kind, colour, shape_region = (labels[:, j, :].reshape(-1) for j in range(3))
    where = np.tile(region, n)
    test_frames = frame % 5 == 0
    shape = kind > 0
    print(f"{folder}: {n} frames, {int(shape.sum())} shape patches of {len(kind)}")
    print(f"{'property':<22} {'probe':>7} {'majority':>9}")
    for name, y, classes, keep in [
        ("shape or background", shape.astype(int), 2, np.ones_like(shape)),
        ("kind (shape patches)", kind, 4, shape),
        ("colour (shape patches)", colour, 5, shape),
        ("region (shape patches)", where, 9, shape),
        ("its shape's region", shape_region, 10, shape),
        ("region (all patches)", where, 9, np.ones_like(shape)),
    ]:
        idx = np.flatnonzero(keep)
        train, test = idx[~test_frames[idx]], idx[test_frames[idx]]
        acc = fit(x, y, classes, train, test)
        majority = float((y[test] == np.bincount(y[train]).argmax()).mean())
        print(f"{name:<22} {100 * acc:>6.1f}% {100 * majority:>8.1f}%")


if __name__ == "__main__":
    main()
