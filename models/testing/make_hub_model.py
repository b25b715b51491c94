#!/usr/bin/env python3
"""Makes `models/test-hub/`: the test model (models/test-tiny) laid out as
Hugging Face ships SmolVLM2 (`HuggingFaceTB/SmolVLM2-256M-Video-Instruct`),
so that the tests load a folder shaped exactly like the hub's:

- the chat template only in `chat_template.json` (`{"chat_template": ...}`),
  not in `tokenizer_config.json`;
- a `processor_config.json` with `image_seq_len` and `processor_class`;
- beside the fp32 graphs, an `_fp16` variant whose float inputs, outputs
  and KV cache are float16 (as the hub's `_fp16` files are), a `_quantized`
  variant (ONNX Runtime's dynamic int8 quantization of the MatMul weights,
  as the hub's `_quantized` and `_int8` files are made), and `_q4` and
  `_q4f16` variants (4-bit block-quantized MatMul weights, ONNX Runtime's
  MatMulNBits operator, on the fp32 and the float16 graphs).

The weights are test-tiny's: the fp32 graphs are copied as they are, the
others derived from them, so the answers per variant can be compared with
ONNX Runtime in Python (models/testing/reference.py --variant).

    python3 models/testing/make_hub_model.py [OUT_DIR]

Needs: onnx, onnxruntime, numpy (models/testing/requirements.txt) and
onnx-ir (models/testing/requirements-make.txt, for the 4-bit quantizer); no
torch. Takes a few seconds.
"""

import json
import os
import shutil
import sys

import logging

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer
from onnxruntime.transformers.float16 import convert_float_to_float16

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "test-tiny")
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "test-hub")
GRAPHS = ["vision_encoder", "embed_tokens", "decoder_model_merged"]


def main():
    # The 4-bit quantizer logs every node at INFO.
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    os.makedirs(os.path.join(OUT, "onnx"), exist_ok=True)
    for name in ["config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json"]:
        shutil.copy(os.path.join(SOURCE, name), os.path.join(OUT, name))

    # The template moves to chat_template.json, as the hub's SmolVLM2 has it.
    with open(os.path.join(SOURCE, "tokenizer_config.json")) as f:
        tokenizer_config = json.load(f)
    template = tokenizer_config.pop("chat_template")
    tokenizer_config["processor_class"] = "SmolVLMProcessor"
    write(tokenizer_config, "tokenizer_config.json")
    write({"chat_template": template}, "chat_template.json")

    with open(os.path.join(SOURCE, "config.json")) as f:
        config = json.load(f)
    image, patch = config["vision_config"]["image_size"], config["vision_config"]["patch_size"]
    grid = image // patch // config.get("scale_factor", 1)
    write({"image_seq_len": grid * grid, "processor_class": "SmolVLMProcessor"}, "processor_config.json")

    for graph in GRAPHS:
        fp32 = os.path.join(SOURCE, "onnx", graph + ".onnx")
        shutil.copy(fp32, os.path.join(OUT, "onnx", graph + ".onnx"))
        # float16 everywhere, inputs and outputs included (keep_io_types=False):
        # the hub's _fp16 graphs take and give float16.
        half = convert_float_to_float16(onnx.load(fp32), keep_io_types=False)
        onnx.save(half, os.path.join(OUT, "onnx", graph + "_fp16.onnx"))
        # int8 weights of the MatMuls, activations quantized at run time
        # (DynamicQuantizeLinear + MatMulInteger); float inputs and outputs.
        quantize_dynamic(
            fp32,
            os.path.join(OUT, "onnx", graph + "_quantized.onnx"),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
        )
        # 4-bit weights in blocks of 32 (MatMulNBits), from the fp32 graph
        # (_q4) and from the float16 one (_q4f16, float16 at the boundary).
        for suffix, model in [("_q4", onnx.load(fp32)), ("_q4f16", half)]:
            quantizer = MatMulNBitsQuantizer(model, algo_config=DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True))
            quantizer.process()
            onnx.save(quantizer.model.model, os.path.join(OUT, "onnx", graph + suffix + ".onnx"))
    print("wrote", os.path.abspath(OUT))


def write(value, name):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
