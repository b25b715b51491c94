#!/usr/bin/env python3
"""Independent reference for the model runtime tests: runs a prefill through
ONNX Runtime (not tract, not glimpse's code) and prints the logits of the last
position as JSON; with "max_new_tokens", also generates greedily with the KV
cache fed back, and prints every step's tokens and logits.

Reads one JSON object on stdin:
  {"model": DIR, "variant": "" | "_fp16" | "_quantized" | ... (default ""),
   "input_ids": [..], "position_ids": [..],
   "pixel_values": [3*H*W floats] | null, "max_new_tokens": N (default 0),
   "runtime": "onnxruntime" | "onnx.reference" (default "onnxruntime")}
"onnx.reference" runs the graphs with the onnx package's reference
evaluator, which computes every operator as the ONNX specification defines
it (numpy, slow): the arbiter where runtimes' kernels differ on purpose,
e.g. ONNX Runtime's int8 MatMul on x86 CPUs without VNNI, which saturates
its 16-bit intermediate sums when both weights and activations use all 8
bits (see tests/hub.rs).
Image features replace the embeddings of the image tokens, in order (the
SmolVLM convention). Float inputs are given in the dtype each graph declares
(float16 for _fp16 graphs), and the KV cache stays in the decoder's dtype;
logits are printed as float32. Prints {"logits": [..]} and, with
max_new_tokens, {"tokens": [..], "steps": [[..], ..]} (the logits that chose
each token). Needs: onnxruntime, numpy (pip).
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

req = json.load(sys.stdin)
model = req["model"]
variant = req.get("variant") or ""
cfg = json.load(open(os.path.join(model, "config.json")))
text = cfg["text_config"]
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class Specification:
    """The onnx package's reference evaluator behind ONNX Runtime's
    session calls that this script makes."""

    def __init__(self, path):
        from onnx.reference import ReferenceEvaluator

        proto = onnx.load(path)
        self.graph = proto.graph
        self.evaluator = ReferenceEvaluator(proto)

    def get_inputs(self):
        return [Input(i.name, i.type.tensor_type.elem_type) for i in self.graph.input]

    def run(self, outputs, feeds):
        return self.evaluator.run(outputs, feeds)


class Input:
    """An input's name and type, spelled as ONNX Runtime spells them."""

    def __init__(self, name, elem_type):
        self.name = name
        # TensorProto.FLOAT -> "tensor(float)", FLOAT16 -> "tensor(float16)"
        self.type = f"tensor({onnx.helper.tensor_dtype_to_string(elem_type).split('.')[-1].lower()})"


def session(name):
    path = os.path.join(model, "onnx", name + variant + ".onnx")
    if req.get("runtime", "onnxruntime") == "onnx.reference":
        return Specification(path)
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def dtype(sess, name):
    return next(DTYPES[i.type] for i in sess.get_inputs() if i.name == name)


embed = session("embed_tokens")
decoder = session("decoder_model_merged")
ids = np.array([req["input_ids"]], dtype=np.int64)
embeds = embed.run(None, {"input_ids": ids})[0]
if req.get("pixel_values") is not None:
    vision = session("vision_encoder")
    size = cfg["vision_config"]["image_size"]
    pixels = np.array(req["pixel_values"], dtype=np.float32).reshape(1, 1, 3, size, size)
    mask = np.ones((1, 1, size, size), dtype=bool)
    features = vision.run(None, {"pixel_values": pixels.astype(dtype(vision, "pixel_values")), "pixel_attention_mask": mask})[0]
    slots = np.where(ids[0] == cfg["image_token_id"])[0]
    embeds[0, slots] = features[: len(slots)].astype(embeds.dtype)

head_dim = text.get("head_dim", text["hidden_size"] // text["num_attention_heads"])
layers = text["num_hidden_layers"]
cache_dtype = dtype(decoder, "past_key_values.0.key")
past = [np.zeros((1, text["num_key_value_heads"], 0, head_dim), dtype=cache_dtype) for _ in range(2 * layers)]
positions = list(req["position_ids"])
outputs = ["logits"] + [f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")]


def step(embeds, positions):
    """One decoder run on top of `past`; returns the last position's logits."""
    global past
    feeds = {
        "inputs_embeds": embeds.astype(dtype(decoder, "inputs_embeds")),
        "attention_mask": np.ones((1, past[0].shape[2] + embeds.shape[1]), dtype=np.int64),
        "position_ids": np.array([positions], dtype=np.int64),
    }
    for i in range(layers):
        for j, kind in enumerate(("key", "value")):
            feeds[f"past_key_values.{i}.{kind}"] = past[2 * i + j]
    logits, *past = decoder.run(outputs, feeds)
    return logits[0, -1].astype(np.float32)


logits = step(embeds, positions)
result = {"logits": logits.tolist()}
if req.get("max_new_tokens"):
    # Generated tokens continue after the last prompt position, as in
    # glimpse's llm::generate.
    tokens, steps, position = [], [], max(positions) + 1
    for n in range(req["max_new_tokens"]):
        token = int(np.argmax(logits))
        tokens.append(token)
        steps.append(logits.tolist())
        if n + 1 < req["max_new_tokens"]:
            logits = step(embed.run(None, {"input_ids": np.array([[token]], dtype=np.int64)})[0], [position])
            position += 1
    result.update(tokens=tokens, steps=steps)
json.dump(result, sys.stdout)
