#!/usr/bin/env python3
"""Makes `models/test-tiny/`: a tiny random-weight video LLM in the
Hugging Face "onnx-community" layout that SmolVLM exports use (docs/architecture.md §6).

It exists so that the model runtime can be tested for real (three ONNX graphs,
a KV cache fed back explicitly, RoPE position ids, a real tokenizer.json and
chat template) before the trained demo model does. The weights are random
(seeded): outputs are meaningless but deterministic.

    python3 models/testing/make_test_model.py [OUT_DIR]

Needs: torch, onnx, tokenizers (pip). Takes a few seconds on a CPU.
"""

import json
import math
import os
import sys

import torch
from torch import nn
from tokenizers import Tokenizer, models, pre_tokenizers, decoders
from tokenizers import AddedToken

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "test-tiny")

# Sizes: a 64x64 frame cut into 8x8 patches gives an 8x8 grid of 64 tokens.
IMAGE, PATCH = 64, 8
GRID = IMAGE // PATCH
VISION_DIM = 32
HIDDEN, LAYERS, HEADS, KV_HEADS = 64, 2, 4, 2
HEAD_DIM = HIDDEN // HEADS
ROPE_THETA = 10000.0
MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]

SPECIAL = ["<unk>", "<|im_start|>", "<end_of_utterance>", "<image>", "<fake_token_around_image>", "<global-img>"]
WORDS = """user assistant system : , . ? ! a an the is are was were there what when where which who how many
much colour color shape shapes red green blue yellow purple orange white black circle square triangle star
appeared left moved stopped came went at top bottom middle center right of in on to from before after now
nothing changed change one two three four zero yes no seconds second s and or it this that describe scene
frame time person door car""".split()


def make_tokenizer():
    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    # Word-level pieces for capitalised role names as the template writes them.
    for w in ["User", "Assistant", "System"]:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL])
    return tok, vocab


# SmolVLM2's chat template, as published in its tokenizer_config.json.
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


class Vision(nn.Module):
    """Patch embedding, one transformer layer, a linear connector."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, VISION_DIM, PATCH, stride=PATCH)
        self.pos = nn.Parameter(torch.randn(GRID * GRID, VISION_DIM) * 0.1)
        self.qkv = nn.Linear(VISION_DIM, 3 * VISION_DIM)
        self.proj = nn.Linear(VISION_DIM, VISION_DIM)
        self.mlp = nn.Sequential(nn.Linear(VISION_DIM, 64), nn.GELU(), nn.Linear(64, VISION_DIM))
        self.ln1 = nn.LayerNorm(VISION_DIM)
        self.ln2 = nn.LayerNorm(VISION_DIM)
        self.connector = nn.Linear(VISION_DIM, HIDDEN)

    def forward(self, pixel_values, pixel_attention_mask):
        # [1, 1, 3, H, W]; padding pixels (mask false) are zeroed.
        x = pixel_values[0] * pixel_attention_mask[0].unsqueeze(1).to(pixel_values.dtype)
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        # One pre-norm transformer layer, two heads.
        q, k, v = self.qkv(self.ln1(x)).view(-1, GRID * GRID, 3, 2, VISION_DIM // 2).permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(VISION_DIM // 2)).softmax(-1) @ v
        x = x + self.proj(att.transpose(1, 2).reshape(-1, GRID * GRID, VISION_DIM))
        x = x + self.mlp(self.ln2(x))
        return self.connector(x).reshape(-1, HIDDEN)


class Embed(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.table = nn.Embedding(vocab, HIDDEN)

    def forward(self, input_ids):
        return self.table(input_ids)


def rms_norm(x, w):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w


def rotate_half(x):
    a, b = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2 :]
    return torch.cat((-b, a), dim=-1)


class Decoder(nn.Module):
    """A Llama-style decoder: RMSNorm, RoPE from position_ids, grouped-query
    attention over an explicit KV cache, SwiGLU MLP."""

    def __init__(self, vocab):
        super().__init__()
        self.q = nn.ModuleList(nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=False) for _ in range(LAYERS))
        self.k = nn.ModuleList(nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False) for _ in range(LAYERS))
        self.v = nn.ModuleList(nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False) for _ in range(LAYERS))
        self.o = nn.ModuleList(nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False) for _ in range(LAYERS))
        self.up = nn.ModuleList(nn.Linear(HIDDEN, 2 * 128, bias=False) for _ in range(LAYERS))
        self.down = nn.ModuleList(nn.Linear(128, HIDDEN, bias=False) for _ in range(LAYERS))
        self.n1 = nn.ParameterList(nn.Parameter(torch.ones(HIDDEN)) for _ in range(LAYERS))
        self.n2 = nn.ParameterList(nn.Parameter(torch.ones(HIDDEN)) for _ in range(LAYERS))
        self.norm = nn.Parameter(torch.ones(HIDDEN))
        self.head = nn.Linear(HIDDEN, vocab, bias=False)
        inv = 1.0 / (ROPE_THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        s = inputs_embeds.shape[1]
        p = past[0].shape[2]
        freqs = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq  # [1, S, hd/2]
        emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)  # [1, 1, S, hd]
        cos, sin = emb.cos(), emb.sin()
        # Query i sits at index p+i of the cache; it sees keys up to itself
        # that the attention mask allows.
        keys = torch.arange(p + s, dtype=torch.long).unsqueeze(0)
        queries = (torch.arange(s, dtype=torch.long) + p).unsqueeze(1)
        allowed = (keys <= queries).unsqueeze(0).unsqueeze(0) & attention_mask.bool()[:, None, None, :]
        bias = torch.where(allowed, torch.zeros((), dtype=torch.float32), torch.full((), -1e9))
        h = inputs_embeds
        presents = []
        for i in range(LAYERS):
            x = rms_norm(h, self.n1[i])
            q = self.q[i](x).view(1, s, HEADS, HEAD_DIM).transpose(1, 2)
            k = self.k[i](x).view(1, s, KV_HEADS, HEAD_DIM).transpose(1, 2)
            v = self.v[i](x).view(1, s, KV_HEADS, HEAD_DIM).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = torch.cat((past[2 * i], k), dim=2)
            v = torch.cat((past[2 * i + 1], v), dim=2)
            presents += [k, v]
            rep = HEADS // KV_HEADS
            kk = k.repeat_interleave(rep, dim=1)
            vv = v.repeat_interleave(rep, dim=1)
            att = (q @ kk.transpose(2, 3)) / math.sqrt(HEAD_DIM) + bias
            att = att.softmax(-1) @ vv
            h = h + self.o[i](att.transpose(1, 2).reshape(1, s, HEADS * HEAD_DIM))
            gate, up = self.up[i](rms_norm(h, self.n2[i])).chunk(2, dim=-1)
            h = h + self.down[i](nn.functional.silu(gate) * up)
        return (self.head(rms_norm(h, self.norm)), *presents)


def main():
    torch.manual_seed(7)
    os.makedirs(os.path.join(OUT, "onnx"), exist_ok=True)
    tok, vocab = make_tokenizer()
    tok.save(os.path.join(OUT, "tokenizer.json"))
    v = len(vocab)

    vision, embed, decoder = Vision().eval(), Embed(v).eval(), Decoder(v).eval()
    with torch.no_grad():
        torch.onnx.export(
            vision,
            (torch.zeros(1, 1, 3, IMAGE, IMAGE), torch.ones(1, 1, IMAGE, IMAGE, dtype=torch.bool)),
            os.path.join(OUT, "onnx", "vision_encoder.onnx"),
            input_names=["pixel_values", "pixel_attention_mask"],
            output_names=["image_features"],
            opset_version=17,
            dynamo=False,
        )
        torch.onnx.export(
            embed,
            (torch.zeros(1, 5, dtype=torch.long),),
            os.path.join(OUT, "onnx", "embed_tokens.onnx"),
            input_names=["input_ids"],
            output_names=["inputs_embeds"],
            dynamic_axes={"input_ids": {1: "sequence_length"}, "inputs_embeds": {1: "sequence_length"}},
            opset_version=17,
            dynamo=False,
        )
        past = []
        names_in, names_out, axes = ["inputs_embeds", "attention_mask", "position_ids"], ["logits"], {
            "inputs_embeds": {1: "sequence_length"},
            "attention_mask": {1: "total_sequence_length"},
            "position_ids": {1: "sequence_length"},
            "logits": {1: "sequence_length"},
        }
        for i in range(LAYERS):
            for kind in ("key", "value"):
                past.append(torch.zeros(1, KV_HEADS, 3, HEAD_DIM))
                names_in.append(f"past_key_values.{i}.{kind}")
                names_out.append(f"present.{i}.{kind}")
                axes[f"past_key_values.{i}.{kind}"] = {2: "past_sequence_length"}
                axes[f"present.{i}.{kind}"] = {2: "total_sequence_length"}
        torch.onnx.export(
            decoder,
            (torch.zeros(1, 4, HIDDEN), torch.ones(1, 7, dtype=torch.long), torch.arange(3, 7).unsqueeze(0), *past),
            os.path.join(OUT, "onnx", "decoder_model_merged.onnx"),
            input_names=names_in,
            output_names=names_out,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )

    config = {
        "architectures": ["SmolVLMForConditionalGeneration"],
        "model_type": "smolvlm",
        "image_token_id": vocab["<image>"],
        "scale_factor": 1,
        "vision_config": {"image_size": IMAGE, "patch_size": PATCH, "hidden_size": VISION_DIM},
        "text_config": {
            "hidden_size": HIDDEN,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS,
            "head_dim": HEAD_DIM,
            "vocab_size": v,
            "rope_theta": ROPE_THETA,
            "max_position_embeddings": 4096,
        },
        # Images go in bare; tests/model.rs turns SmolVLM's markers on in a copy.
        "glimpse": {"wrap_images": False},
    }
    generation = {"bos_token_id": vocab["<|im_start|>"], "eos_token_id": [vocab["<end_of_utterance>"]], "max_new_tokens": 32}
    preprocessor = {
        "image_processor_type": "Idefics3ImageProcessor",
        "do_resize": True,
        "size": {"longest_edge": IMAGE},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": MEAN,
        "image_std": STD,
        "do_image_splitting": False,
        "max_image_size": {"longest_edge": IMAGE},
        "do_pad": True,
    }
    tokenizer_config = {
        "bos_token": "<|im_start|>",
        "eos_token": "<end_of_utterance>",
        "unk_token": "<unk>",
        "pad_token": "<unk>",
        "chat_template": CHAT_TEMPLATE,
        "added_tokens_decoder": {
            str(vocab[t]): {"content": t, "special": True, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False}
            for t in SPECIAL
        },
    }
    for name, value in [
        ("config.json", config),
        ("generation_config.json", generation),
        ("preprocessor_config.json", preprocessor),
        ("tokenizer_config.json", tokenizer_config),
    ]:
        with open(os.path.join(OUT, name), "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")
    print("wrote", os.path.abspath(OUT))


if __name__ == "__main__":
    main()
