#!/usr/bin/env python3
"""Gives a checkpoint's vision side the place code (model.Vision.place): a
fixed 2-D sinusoidal code of each token's grid cell, added after the
connector, inside the exported vision graph.

    python3 place.py work/shipped.pt work/placed.pt [frames]

The code goes where the tokens' content is not: the connector's output of
the trained encoder is nearly low-rank (at step 37 055 the top 16 of its
128 principal directions hold 99.65% of the variance over fresh frames,
the last 64 under 0.01%), so the code (model.sincos_2d, 64 dims) is laid
along the 64 directions of least variance (an orthonormal basis from the
features' covariance over `frames` fresh frames, 600 by default), at
norm model.PLACE_NORM per token. What the decoder read before is then
unchanged in the directions it used, and a linear read-out of the place
does not have to untangle it from kind and colour. The basis is computed
once here and frozen into the checkpoint (the `vision.place` buffer);
export.py writes it into the vision graph, and import_onnx.py reads it
back.

Everything else of the checkpoint is kept (weights, step; the optimiser
state is dropped, as for any architecture change).
"""

import sys

import numpy as np
import torch

import model as M
import qa
import world


def least_variance_basis(features, dims=M.PLACE_DIMS):
    """[dims, HIDDEN]: orthonormal rows along the least-variance principal
    directions of `features` [N, HIDDEN]."""
    x = features - features.mean(0, keepdims=True)
    values, vectors = np.linalg.eigh(x.T @ x / len(x))  # ascending
    return torch.from_numpy(vectors[:, :dims].T.copy()).float(), values


def main():
    src, out = sys.argv[1], sys.argv[2]
    frames = int(sys.argv[3]) if len(sys.argv) > 3 else 600
    torch.set_num_threads(1)
    _, vocab = qa.make_tokenizer()
    state = torch.load(src, map_location="cpu", weights_only=False)
    if M.has_place(state["model"]):
        sys.exit(f"{src} already has the place code")
    net = M.ShapesModel(len(vocab), M.decoder_layers(state["model"]), place=True)
    missing, unexpected = net.load_state_dict(state["model"], strict=False)
    assert missing == ["vision.place"] and not unexpected, (missing, unexpected)
    net.eval()
    # Seeds apart from training's (< 10^9), the eval's and probe.py's.
    rng = np.random.default_rng(11)
    clips = [world.make_clip(int(rng.integers(4 * 10**9, 5 * 10**9)), frames=12, activity=1.5) for _ in range(frames // 12)]
    pixels = np.concatenate([c.frames for c in clips])
    with torch.no_grad():
        feats = torch.cat([net.vision.features(M.normalise(pixels[i : i + 64])) for i in range(0, len(pixels), 64)])
    basis, values = least_variance_basis(feats.reshape(-1, M.HIDDEN).double().numpy())
    share = values[: M.PLACE_DIMS].sum() / values.sum()
    net.vision.place.copy_(M.place_code(basis))
    torch.save({"model": net.state_dict(), "step": state["step"]}, out)
    print(f"{out}: place code along the {M.PLACE_DIMS} least-variance directions ({100 * share:.4f}% of the features' variance), norm {M.PLACE_NORM} per token; step {state['step']}")


if __name__ == "__main__":
    main()
