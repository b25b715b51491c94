#!/usr/bin/env python3
"""Reads an exported shapes model folder back into a training checkpoint, so
training can resume from the shipped model when its checkpoint is gone
(`work/` is not in the repository):

    python3 import_onnx.py model work/ckpt.pt

The checkpoint holds the weights (and the place code, when the folder's
vision graph adds one) and the step the folder was trained to; the
optimiser starts afresh, and the auxiliary heads (kind, colour, region),
which are not exported, start from random (a `--vision-steps` phase
retrains them).

torch names most exported weights (each Linear's, transposed into a MatMul)
`onnx::MatMul_N`, so names alone do not say which parameter an initializer
holds. The architecture is exported once with a distinct random value in
every parameter (a probe); each initializer of the probe is found among the
parameters, as is or transposed. The two exports are traced alike, so an
initializer of the real folder holds the parameter its namesake in the probe
does. The numbers shift with the module's parameter count (e.g. when an
auxiliary head is added), so an initializer is found by where the graph uses
it (the node, named after its module, and the input slot), which an
unchanged exported architecture keeps, and by name where no node uses it. The import is checked by exporting the imported weights again: every
initializer must equal the folder's, bit for bit.
"""

import json
import os
import sys
import tempfile

import numpy as np
import onnx
import torch
from onnx import numpy_helper

import export
import model as M
import qa

GRAPHS = ("vision_encoder", "embed_tokens", "decoder_model_merged")


def read(folder):
    """{graph: the loaded ONNX model} of a model folder (read once: the
    graphs are most of the import's time)."""
    return {g: onnx.load(os.path.join(folder, "onnx", f"{g}.onnx")) for g in GRAPHS}


def initializers(graphs):
    """{graph: {name: array}} of `read`'s graphs."""
    return {g: {i.name: numpy_helper.to_array(i) for i in m.graph.initializer} for g, m in graphs.items()}


def uses(graphs):
    """{graph: {initializer name: (node name, input slot)}}: where each
    initializer is first used (node names follow the module path, e.g.
    /blocks.0/qkv/MatMul)."""
    out = {}
    for g, m in graphs.items():
        names = {i.name for i in m.graph.initializer}
        out[g] = {}
        for node in m.graph.node:
            for slot, name in enumerate(node.input):
                if name in names:
                    out[g].setdefault(name, (node.name, slot))
    return out


def probe_map(net):
    """{graph: {initializer name: (parameter name, transposed)}} for `net`'s
    architecture."""
    params = dict(net.named_parameters())
    # Saved buffers (the place code) are initializers too.
    saved = net.state_dict()
    params.update({k: b for k, b in net.named_buffers() if k in saved})
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in params.values():
            p.copy_(torch.randn(p.shape, generator=gen))
    arrays = {k: v.detach().numpy() for k, v in params.items()}
    with tempfile.TemporaryDirectory() as tmp:
        export.export_graphs(net, tmp)
        graphs = read(tmp)
        found, where = initializers(graphs), uses(graphs)
    out = {}
    for g, inits in found.items():
        out[g] = {}
        for name, value in inits.items():
            hits = [
                (p, t)
                for p, a in arrays.items()
                for t, cand in ((False, a), (True, a.T if a.ndim == 2 else None))
                if cand is not None and cand.shape == value.shape and np.array_equal(cand, value)
            ]
            if len(hits) != 1:
                sys.exit(f"{g}: initializer {name} matches {len(hits)} parameters; the architecture changed?")
            out[g][name] = hits[0] + (where[g].get(name),)
    return out


def by_slot(graphs):
    """{graph: {(node name, input slot): initializer name}}."""
    return {g: {slot: name for name, slot in names.items()} for g, names in uses(graphs).items()}


def folder_layers(folder):
    """The decoder depth an exported folder declares (config.json)."""
    with open(os.path.join(folder, "config.json")) as f:
        return int(json.load(f)["text_config"]["num_hidden_layers"])


def folder_place(folder):
    """Whether an exported folder's vision graph adds the place code
    (model.Vision.place; export.py says so in config.json)."""
    with open(os.path.join(folder, "config.json")) as f:
        return "place_code" in json.load(f).get("glimpse", {})


def load_folder(net, folder, graphs=None):
    """Puts the weights of an exported folder (or of its graphs, `read`
    already) into `net`; returns the names of the parameters it filled."""
    mapping = probe_map(net)
    graphs = graphs or read(folder)
    shipped = initializers(graphs)
    slots = by_slot(graphs)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    filled = set()
    for g, names in mapping.items():
        for name, (param, transposed, slot) in names.items():
            theirs = slots[g].get(slot, name)
            value = shipped[g].get(theirs)
            want = tuple(state[param].shape)[::-1] if transposed else tuple(state[param].shape)
            if value is None or value.shape != want:
                sys.exit(f"{folder}: {g} has no initializer like {name} ({param}): not this architecture")
            state[param] = torch.from_numpy(np.array(value.T if transposed else value, copy=True))
            filled.add(param)
    net.load_state_dict(state)
    return filled


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1])
    folder, ckpt = sys.argv[1], sys.argv[2]
    _, vocab = qa.make_tokenizer()
    net = M.ShapesModel(len(vocab), folder_layers(folder), folder_place(folder))
    graphs = read(folder)
    filled = load_folder(net, folder, graphs)
    # The check: the imported weights export to the same initializers (met
    # by where the graph uses them, as the names may be numbered anew).
    shipped, slots = initializers(graphs), uses(graphs)
    with tempfile.TemporaryDirectory() as tmp:
        export.export_graphs(net, tmp)
        exported = read(tmp)
        again, again_slots = initializers(exported), by_slot(exported)
    for g in GRAPHS:
        for name, value in shipped[g].items():
            ours = again_slots[g].get(slots[g].get(name), name)
            if not np.array_equal(again[g].get(ours), value):
                sys.exit(f"{g}: {name} differs after the round trip")
    config = json.load(open(os.path.join(folder, "config.json")))
    step = int(config.get("glimpse", {}).get("trained_steps", 0))
    fresh = sorted(set(dict(net.named_parameters())) - filled)
    os.makedirs(os.path.dirname(os.path.abspath(ckpt)), exist_ok=True)
    # No optimiser state: train.py resumes the weights and starts AdamW anew.
    torch.save({"model": net.state_dict(), "step": step}, ckpt)
    print(f"{ckpt}: {len(filled)} parameters from {folder} (step {step}), round trip exact; not exported, fresh: {fresh}")


if __name__ == "__main__":
    main()
