#!/usr/bin/env python3
"""Independent reference for the model runtime tests: runs a prefill through
ONNX Runtime (not tract, not glimpse's code) and prints the logits of the last
position as JSON.

Reads one JSON object on stdin:
  {"model": DIR, "input_ids": [..], "position_ids": [..],
   "pixel_values": [3*H*W floats] | null}
Image features replace the embeddings of the image tokens, in order (the
SmolVLM convention). Needs: onnxruntime, numpy (pip).
"""
import json
import os
import sys

import numpy as np
import onnxruntime as ort

req = json.load(sys.stdin)
model = req["model"]
cfg = json.load(open(os.path.join(model, "config.json")))
text = cfg["text_config"]
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1


def session(name):
    return ort.InferenceSession(os.path.join(model, "onnx", name + ".onnx"), opts, providers=["CPUExecutionProvider"])


ids = np.array([req["input_ids"]], dtype=np.int64)
embeds = session("embed_tokens").run(None, {"input_ids": ids})[0]
if req.get("pixel_values") is not None:
    size = cfg["vision_config"]["image_size"]
    pixels = np.array(req["pixel_values"], dtype=np.float32).reshape(1, 1, 3, size, size)
    mask = np.ones((1, 1, size, size), dtype=bool)
    features = session("vision_encoder").run(None, {"pixel_values": pixels, "pixel_attention_mask": mask})[0]
    slots = np.where(ids[0] == cfg["image_token_id"])[0]
    embeds[0, slots] = features[: len(slots)]

decoder = session("decoder_model_merged")
feeds = {
    "inputs_embeds": embeds,
    "attention_mask": np.ones((1, ids.shape[1]), dtype=np.int64),
    "position_ids": np.array([req["position_ids"]], dtype=np.int64),
}
head_dim = text.get("head_dim", text["hidden_size"] // text["num_attention_heads"])
for i in range(text["num_hidden_layers"]):
    for kind in ("key", "value"):
        feeds[f"past_key_values.{i}.{kind}"] = np.zeros((1, text["num_key_value_heads"], 0, head_dim), dtype=np.float32)
logits = decoder.run(["logits"], feeds)[0]
json.dump({"logits": logits[0, -1].tolist()}, sys.stdout)
