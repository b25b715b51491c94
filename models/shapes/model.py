"""The shapes model: a small ViT-style vision encoder with a connector, and
a Llama-style decoder-only language model, in the three graphs of the
onnx-community layout (docs/architecture.md §6).

- Vision: a conv stem (four stride-2 convolutions, 128 px → 8×8), three
  transformer layers, a two-layer connector into the LM's width. An
  auxiliary per-patch head (kind and colour of the shape covering the
  patch, and the region of that shape) trains the vision side from the
  renderer's labels; it is not exported.
- Decoder: RMSNorm, RoPE from the caller's position ids (so dropped tokens
  keep their full-layout positions), grouped-query attention over an
  explicit KV cache, SwiGLU MLP. One forward serves training (a padded
  batch, no past) and export (batch 1, past fed back).
"""

import math

import torch
from torch import nn

IMAGE, GRID = 128, 8
VISION_DIM, VISION_LAYERS, VISION_HEADS = 96, 3, 4
HIDDEN, LAYERS, HEADS, KV_HEADS = 128, 4, 4, 2
HEAD_DIM = HIDDEN // HEADS
INTER = 320
ROPE_THETA = 10000.0
MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
AUX_SCALE = 16.0  # the auxiliary heads' logit scale (cosine heads)
# The place code (Vision.place): its norm per token. A quarter of a
# background token's (shape tokens are ~73, background ~12 at step
# 37 055): the daemon's token dropping compares tokens by their centred
# cosine, and a code shared by every frame makes a cell's tokens alike.
# At τ 0.5 over 12 clips of 48 frames it kept 11.2% of the tokens without
# the code, 11.4% at norm 2, 10.0% at 3, 8.7% at 4, 6.4% at 6, 5.2% at 12.
PLACE_NORM = 3.0
PLACE_DIMS = 64  # 32 for the row, 32 for the column


def sincos_2d(grid=GRID, dims=PLACE_DIMS):
    """A fixed 2-D sinusoidal code per grid cell (row-major, as the tokens):
    the first half of the dims encode the cell's row, the second its
    column, each as sin and cos of the cell centre's coordinate u in (0, 1)
    at the frequencies pi/2, pi, ..., (dims/4) * pi/2. The low frequencies
    survive the memory's 2x2 pooling (an average of neighbours' codes is
    the code of a place between them), the high ones tell neighbours
    apart. Every cell's code has the same norm."""
    u = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid
    freqs = torch.arange(1, dims // 4 + 1, dtype=torch.float64) * math.pi / 2
    axis = torch.cat([torch.sin(u[:, None] * freqs), torch.cos(u[:, None] * freqs)], 1)  # [grid, dims/2]
    rows = axis.repeat_interleave(grid, 0)
    cols = axis.repeat(grid, 1)
    return torch.cat([rows, cols], 1).float()


def place_code(basis, norm=PLACE_NORM):
    """The place code in the LM's width: `sincos_2d` through `basis`
    ([PLACE_DIMS, HIDDEN], orthonormal rows), scaled to `norm` per token."""
    code = sincos_2d() @ basis
    return code * (norm / code.norm(dim=1, keepdim=True))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        n, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.ln1(x)).view(n, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = ((q @ k.transpose(-1, -2)) / math.sqrt(d // h)).softmax(-1) @ v
        x = x + self.proj(att.transpose(1, 2).reshape(n, t, d))
        return x + self.mlp(self.ln2(x))


class Vision(nn.Module):
    def __init__(self, place=False):
        super().__init__()
        c = [3, 32, 48, 64, VISION_DIM]
        stem = []
        for i in range(4):
            stem += [nn.Conv2d(c[i], c[i + 1], 3, stride=2, padding=1)]
            if i < 3:
                stem += [nn.GELU()]
        self.stem = nn.Sequential(*stem)
        self.pos = nn.Parameter(torch.randn(GRID * GRID, VISION_DIM) * 0.02)
        self.blocks = nn.ModuleList(Block(VISION_DIM, VISION_HEADS) for _ in range(VISION_LAYERS))
        self.ln = nn.LayerNorm(VISION_DIM)
        self.connector = nn.Sequential(nn.Linear(VISION_DIM, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, HIDDEN))
        # On the connector's output: with the heads on the trunk (before
        # the connector), kinds were 99% linearly separable in the LM's
        # input but with a tenth of the margin of colours, and the LM never
        # learned to read them (models/shapes/README.md). Bias-free: cosine.
        self.aux_kind = nn.Linear(HIDDEN, 4, bias=False)
        self.aux_colour = nn.Linear(HIDDEN, 5, bias=False)
        # Where the patch's shape is (3×3 regions): without it the tokens
        # lost their place (a linear probe read a shape patch's region 26%
        # of the time, majority 14%), and "where" and the regions of
        # descriptions cannot be better than the tokens.
        self.aux_region = nn.Linear(HIDDEN, 10, bias=False)
        # The place code: a fixed (not learned) 2-D sinusoidal code of each
        # token's grid cell, added after the connector, so every token the
        # decoder reads says where its patch is in a form readable at once
        # (a linear probe read a patch's place from the step 37 055 tokens
        # 75% of the time: the learned `pos` is added before the
        # transformer layers and mostly gone by the connector's output).
        # A buffer, not a parameter: saved in checkpoints, a constant of
        # the exported vision graph. Set it with `place_code`; models
        # before it have none (`has_place`).
        if place:
            self.register_buffer("place", torch.zeros(GRID * GRID, HIDDEN))
        else:
            self.place = None

    def trunk(self, pixels):
        """[N, 3, 128, 128] normalised → [N, 64, VISION_DIM]."""
        x = self.stem(pixels).flatten(2).transpose(1, 2) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.ln(x)

    def features(self, pixels):
        """[N, 3, 128, 128] normalised → the tokens the decoder reads,
        [N, 64, HIDDEN]: the connector's output plus the place code."""
        feats = self.connector(self.trunk(pixels))
        return feats if self.place is None else feats + self.place

    def forward(self, pixels):
        """→ features [N, 64, HIDDEN], kind, colour and region logits."""
        feats = self.features(pixels)
        # Cosine heads: a class scores by the angle between the feature and
        # its direction, so kind and colour must each take a large share of
        # the feature's direction, which is what the decoder's normalised
        # attention sees.
        unit = nn.functional.normalize(feats, dim=-1)
        kind = AUX_SCALE * unit @ nn.functional.normalize(self.aux_kind.weight, dim=-1).T
        colour = AUX_SCALE * unit @ nn.functional.normalize(self.aux_colour.weight, dim=-1).T
        region = AUX_SCALE * unit @ nn.functional.normalize(self.aux_region.weight, dim=-1).T
        return feats, kind, colour, region


class VisionExport(nn.Module):
    """The exported graph: pixel_values [1, 1, 3, H, W], pixel_attention_mask
    [1, 1, H, W] → image_features [64, HIDDEN]."""

    def __init__(self, vision):
        super().__init__()
        self.vision = vision

    def forward(self, pixel_values, pixel_attention_mask):
        x = pixel_values[0] * pixel_attention_mask[0].unsqueeze(1).to(pixel_values.dtype)
        return self.vision.features(x).reshape(-1, HIDDEN)


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
    def __init__(self, vocab, layers=LAYERS):
        super().__init__()
        self.layers = L = layers
        self.q = nn.ModuleList(nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=False) for _ in range(L))
        self.k = nn.ModuleList(nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False) for _ in range(L))
        self.v = nn.ModuleList(nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False) for _ in range(L))
        self.o = nn.ModuleList(nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False) for _ in range(L))
        self.up = nn.ModuleList(nn.Linear(HIDDEN, 2 * INTER, bias=False) for _ in range(L))
        self.down = nn.ModuleList(nn.Linear(INTER, HIDDEN, bias=False) for _ in range(L))
        self.n1 = nn.ParameterList(nn.Parameter(torch.ones(HIDDEN)) for _ in range(L))
        self.n2 = nn.ParameterList(nn.Parameter(torch.ones(HIDDEN)) for _ in range(L))
        self.norm = nn.Parameter(torch.ones(HIDDEN))
        self.head = nn.Linear(HIDDEN, vocab, bias=False)
        # Training reads the residual stream after `tap` layers (train.py's
        # entry head); None in export, so the graphs do not change.
        self.tap, self.tapped = None, None
        # Training keeps the attention probabilities of layer `watch`
        # (train.py's pointer loss); None in export.
        self.watch, self.watched = None, None
        # Training may compute attention with torch's fused kernel
        # (train_decoder.py: the explicit softmax below was two thirds of a
        # step's time); the same function up to rounding. Off in export,
        # whose graphs keep the explicit form.
        self.fused = False
        inv = 1.0 / (ROPE_THETA ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        b, s = inputs_embeds.shape[0], inputs_embeds.shape[1]
        p = past[0].shape[2]
        freqs = position_ids.to(torch.float32).unsqueeze(-1) * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1).unsqueeze(1)  # [B, 1, S, hd]
        cos, sin = emb.cos(), emb.sin()
        # On the inputs' device, so training runs on a GPU as on the CPU.
        dev = inputs_embeds.device
        keys = torch.arange(p + s, dtype=torch.long, device=dev).unsqueeze(0)
        queries = (torch.arange(s, dtype=torch.long, device=dev) + p).unsqueeze(1)
        allowed = (keys <= queries).unsqueeze(0).unsqueeze(0) & attention_mask.bool()[:, None, None, :]
        bias = torch.where(allowed, torch.zeros((), dtype=torch.float32, device=dev), torch.full((), -1e9, device=dev))
        h = inputs_embeds
        presents = []
        rep = HEADS // KV_HEADS
        for i in range(self.layers):
            x = rms_norm(h, self.n1[i])
            q = self.q[i](x).view(b, s, HEADS, HEAD_DIM).transpose(1, 2)
            k = self.k[i](x).view(b, s, KV_HEADS, HEAD_DIM).transpose(1, 2)
            v = self.v[i](x).view(b, s, KV_HEADS, HEAD_DIM).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = torch.cat((past[2 * i], k), dim=2)
            v = torch.cat((past[2 * i + 1], v), dim=2)
            presents += [k, v]
            if self.fused and self.watch != i:
                att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, enable_gqa=True)
                h = h + self.o[i](att.transpose(1, 2).reshape(b, s, HEADS * HEAD_DIM))
                gate, up = self.up[i](rms_norm(h, self.n2[i])).chunk(2, dim=-1)
                h = h + self.down[i](nn.functional.silu(gate) * up)
                if self.tap == i + 1:
                    self.tapped = h
                continue
            kk = k.repeat_interleave(rep, dim=1)
            vv = v.repeat_interleave(rep, dim=1)
            att = (q @ kk.transpose(2, 3)) / math.sqrt(HEAD_DIM) + bias
            att = att.softmax(-1)
            if self.watch == i:
                self.watched = att
            att = att @ vv
            h = h + self.o[i](att.transpose(1, 2).reshape(b, s, HEADS * HEAD_DIM))
            gate, up = self.up[i](rms_norm(h, self.n2[i])).chunk(2, dim=-1)
            h = h + self.down[i](nn.functional.silu(gate) * up)
            if self.tap == i + 1:
                self.tapped = h
        return (self.head(rms_norm(h, self.norm)), *presents)


class ShapesModel(nn.Module):
    def __init__(self, vocab, layers=LAYERS, place=False):
        super().__init__()
        self.vision, self.embed, self.decoder = Vision(place), Embed(vocab), Decoder(vocab, layers)

    def empty_past(self, batch):
        dev = self.decoder.norm.device
        return [torch.zeros(batch, KV_HEADS, 0, HEAD_DIM, device=dev) for _ in range(2 * self.decoder.layers)]


def decoder_layers(state):
    """How many decoder layers a state dict holds."""
    return sum(1 for k in state if k.startswith("decoder.q.") and k.endswith(".weight"))


def has_place(state):
    """Whether a state dict's vision side adds the place code."""
    return "vision.place" in state


# The per-layer parameters of the decoder, as named in a state dict.
LAYER_PARAMS = ["q", "k", "v", "o", "up", "down", "n1", "n2"]


def grow(state, layers):
    """A state dict with a deeper decoder that computes exactly what `state`
    computes ("block expansion"): after every k-th old layer comes a copy of
    it whose output projections (o, down) are zero, so the new layer adds
    nothing to the residual stream until training moves them; its other
    weights start as the copied layer's, not random, so its attention
    already looks where a trained layer looks. More depth where the probe
    says the bottleneck is: the vision side reads kind, colour and region
    at 98-100%, the decoder's answers across time do not."""
    old = decoder_layers(state)
    if layers < old:
        raise ValueError(f"cannot shrink the decoder from {old} to {layers} layers")
    extra = layers - old
    # Which old layer each new one copies: spread evenly, the last ones
    # first when they do not divide (deeper layers compose the answer).
    copies = sorted(old - 1 - (i * old) // extra for i in range(extra)) if extra else []
    order = []
    for i in range(old):
        order.append((i, False))
        order += [(i, True)] * copies.count(i)
    out = {k: v for k, v in state.items() if not any(k.startswith(f"decoder.{p}.") for p in LAYER_PARAMS)}
    for new, (i, zero) in enumerate(order):
        for p in LAYER_PARAMS:
            for suffix in (".weight", ""):
                key = f"decoder.{p}.{i}{suffix}"
                if key in state:
                    value = state[key].clone()
                    if zero and p in ("o", "down"):
                        value.zero_()
                    out[f"decoder.{p}.{new}{suffix}"] = value
    return out


def normalise(frames_uint8):
    """uint8 [N, H, W, 3] → [N, 3, H, W] as the preprocessor does: rescale by
    1/255, then (x - mean) / std."""
    x = torch.from_numpy(frames_uint8).permute(0, 3, 1, 2).float() / 255.0
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - m) / s
