#!/usr/bin/env bash
# Fetches a real compact video LLM, SmolVLM2 256M or 500M Video-Instruct, in
# the onnx-community layout that glimpse loads as it is (docs/architecture.md §6): the JSON
# configs, the tokenizer and onnx/{vision_encoder,embed_tokens,
# decoder_model_merged}<variant>.onnx. Needs a machine with internet access
# to huggingface.co (the build machines of this project have none: this
# script was written, not run there) and `pip install -U "huggingface_hub[cli]"`.
#
# Usage: models/fetch-smolvlm.sh [256M|500M] [VARIANT] [DIR]
#   VARIANT: "" (fp32, default), _fp16, _int8, _quantized, _q4 ... as the
#            repository names its onnx/ files (`glimpse model inspect` lists
#            what a folder holds; _bnb4 is refused, it is CUDA-only).
#   DIR:     default models/smolvlm2-<size><variant>
#   REPO=owner/name overrides the repository (default
#            onnx-community/SmolVLM2-<size>-Video-Instruct).
# Then, in the [model] table:  path = "DIR"  variant = "VARIANT"
# On a Jetson, fp32 or _fp16 graphs suit TensorRT best (it builds fp16
# engines itself); on a CPU, _int8/_quantized are smaller and faster.
set -euo pipefail

size=${1:-256M}
variant=${2:-}
case "$size" in
    256M | 500M) ;;
    *) echo "fetch-smolvlm: size is 256M or 500M, got $size" >&2; exit 64 ;;
esac
repo=${REPO:-onnx-community/SmolVLM2-$size-Video-Instruct}
dir=${3:-models/smolvlm2-${size,,}${variant}}

if ! command -v huggingface-cli >/dev/null; then
    echo "fetch-smolvlm: needs huggingface-cli: pip install -U 'huggingface_hub[cli]'" >&2
    exit 69
fi
# Only the files glimpse reads: the configs, the tokenizer, and the three
# graphs of one variant with their external data (.onnx_data). One
# --include with every pattern: a repeated --include replaces the previous.
# (Newer huggingface_hub also installs `hf download`, with the same options.)
huggingface-cli download "$repo" \
    --local-dir "$dir" \
    --include "*.json" \
        "onnx/vision_encoder${variant}.onnx*" \
        "onnx/embed_tokens${variant}.onnx*" \
        "onnx/decoder_model_merged${variant}.onnx*"

glimpse=${GLIMPSE:-glimpse}
if command -v "$glimpse" >/dev/null; then
    "$glimpse" model inspect "$dir" --variant "$variant"
fi
echo "fetch-smolvlm: $dir is ready; set [model] path = \"$dir\" and variant = \"$variant\"" >&2
