#!/usr/bin/env python3
"""Parity of training and serving: rebuilds, with the training code
(context.py), the context of every prompt the daemon dumped
(`glimpse eval --dump FILE`) and checks that they are the same: the kept
cells of every memory entry and of the canvas, the time labels, the token
ids and the position ids.

    python3 parity.py MODEL_DIR CLIPS_DIR DUMP.jsonl

The frames are decoded by the same GStreamer elements as the daemon's
`file` camera; the encoder runs in ONNX Runtime (the daemon uses tract),
so a token whose similarity sits within 1e-4 of τ may legitimately fall
the other way: such ties are reported, not failed. Exit status 1 on any
other difference. Needs numpy, onnxruntime, tokenizers (no torch).
"""

import json
import os
import sys

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

import context
from make_clips import decode_video

TIE = 1e-4


def main():
    model_dir, clips_dir, dump = sys.argv[1:4]
    config = json.load(open(os.path.join(model_dir, "config.json")))
    pre = json.load(open(os.path.join(model_dir, "preprocessor_config.json")))
    size = config["vision_config"]["image_size"]
    grid = size // config["vision_config"]["patch_size"] // config.get("scale_factor", 1)
    hidden = config["text_config"]["hidden_size"]
    image_token = config["image_token_id"]
    # A model trained on describe windows reads "what changed ?" from the
    # scene before the window and now (context.Memory.window_readout).
    window = config.get("glimpse", {}).get("describe_window_s")
    describe = config.get("glimpse", {}).get("describe", "what changed ?")
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    vision = ort.InferenceSession(os.path.join(model_dir, "onnx", "vision_encoder.onnx"), providers=["CPUExecutionProvider"])
    mean = np.array(pre["image_mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.array(pre["image_std"], np.float32).reshape(1, 3, 1, 1)
    rescale = np.float32(pre["rescale_factor"])

    def encoder(frames):
        cache = {}

        def encode(indices):
            out = []
            for i in indices:
                if i in cache:
                    out.append(cache[i])
                    continue
                x = frames[i].transpose(2, 0, 1)[None].astype(np.float32) * rescale
                x = ((x - mean) / std)[None]
                mask = np.ones((1, 1, size, size), bool)
                cache[i] = vision.run(None, {"pixel_values": x, "pixel_attention_mask": mask})[0]
                out.append(cache[i])
            return np.stack(out)

        return encode

    lines = [json.loads(l) for l in open(dump)]
    groups = {}
    for l in lines:
        groups.setdefault((l["clip"], l["setting"]), []).append(l)
    decoded, failures, ties, checked = {}, 0, 0, 0
    for (clip, setting), prompts in groups.items():
        if clip not in decoded:
            decoded[clip] = decode_video(os.path.join(clips_dir, clip), size)
        frames = decoded[clip]
        first = prompts[0]
        encode = encoder(frames)
        fps = json.load(open(os.path.join(clips_dir, clip.replace(".mkv", ".json"))))["fps"]
        for p in prompts:
            n = p["frame"]
            memory, encoded, masks = context.build_memory(
                frames[: n + 1],
                [i / fps for i in range(n + 1)],
                encode,
                grid,
                hidden,
                tau_pix=first["tau_pix"],
                tau=first["tau"],
                reference=first["reference"],
                similarity=first["similarity"],
                capacities=first["memory"],
                window=window or 2.0,
            )
            # The daemon's Words::is_describe: case and "?" spacing aside.
            if window and p["question"].lower().replace("?", " ?").split() == describe.lower().replace("?", " ?").split():
                items = memory.window_readout(n / fps)
            else:
                items = memory.readout()
            ids, positions, _ = context.layout(tok, image_token, items, p["question"])
            mine = {
                "labels": [it[0] for it in items],
                "grids": [it[1] for it in items],
                "cells": [[int(c) for c in it[2]] for it in items],
                "ids": ids,
                "positions": positions,
            }
            checked += 1
            diff = [k for k in mine if mine[k] != p[k]]
            if not diff:
                continue
            near = near_threshold(encode, encoded, first) + int(memory.closest_call < 1e-5)
            where = f"{clip} [{setting}] frame {n} {p['question']!r}"
            if near:
                ties += 1
                print(f"tie   {where}: {', '.join(diff)} differ; {near} token(s) within {TIE} of tau or an eviction decided by < 1e-5", file=sys.stderr)
            else:
                failures += 1
                print(f"DIFF  {where}: {', '.join(diff)} differ", file=sys.stderr)
                for k in diff:
                    print(f"  {k}: daemon {p[k]}\n  {k}: python {mine[k]}", file=sys.stderr)
    print(f"parity: {checked} prompts checked, {failures} different, {ties} numeric ties")
    sys.exit(1 if failures or not checked else 0)


def near_threshold(encode, encoded, setting):
    """How many tokens of the encoded frames sit within TIE of τ."""
    feats = encode(encoded)
    d = context.Dropper(setting["tau"], setting["reference"], setting["similarity"])
    near = 0
    for f in feats:
        if d.last is not None:
            c = f - f.mean(0, keepdims=True) if setting["similarity"] == "centered" else f
            near += int((np.abs(context.cosines(d.last, c) - np.float32(setting["tau"])) < TIE).sum())
        d.keep(f)
    return near


if __name__ == "__main__":
    main()
