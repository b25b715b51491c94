#!/usr/bin/env bash
# Fetches SmolVLM2-256M-Video-Instruct as Hugging Face ships it, in the
# layout glimpse loads as it is (docs/architecture.md §6): the JSON configs,
# the tokenizer, the chat template (chat_template.json, or
# chat_template.jinja in newer repositories) and
# onnx/{vision_encoder,embed_tokens,decoder_model_merged}<variant>.onnx.
#
# The repository is HuggingFaceTB/SmolVLM2-256M-Video-Instruct; its onnx/
# folder holds the graphs in fp32 (no suffix) and in the variants _fp16,
# _int8, _q4, _q4f16, _quantized, _uint8 and _bnb4, as single files (no
# .onnx_data). Needs a machine with internet access to huggingface.co and
# `pip install -U "huggingface_hub[cli]"`. The build machines of this
# project have no access to the hub: this script was written, not run there.
#
# Usage: models/fetch-smolvlm.sh [--variant VARIANT] [--dir DIR] [--repo OWNER/NAME]
#   --variant  "" (fp32, the default), _fp16, _int8, _q4, _q4f16, _quantized
#              or _uint8. On a CPU with ONNX Runtime, _quantized or _int8
#              are smaller and faster; tract runs quantized graphs several
#              times slower than fp32 (glimpse warns). On a Jetson, fp32 or
#              _fp16 suit TensorRT best. _bnb4 is refused: its MatMulBnb4
#              operator is CUDA-only.
#   --dir      the folder to write (default models/smolvlm2-256m<variant>)
#   --repo     another repository of the same layout (default above)
# Then, in the [model] table:  path = "DIR"  variant = "VARIANT"
set -euo pipefail

repo=HuggingFaceTB/SmolVLM2-256M-Video-Instruct
variant=
dir=
usage() {
    sed -n '/^# Usage:/,/^# Then/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 64
}
while [ $# -gt 0 ]; do
    case "$1" in
        --variant) [ $# -ge 2 ] || usage; variant=$2; shift 2 ;;
        --variant=*) variant=${1#*=}; shift ;;
        --dir) [ $# -ge 2 ] || usage; dir=$2; shift 2 ;;
        --dir=*) dir=${1#*=}; shift ;;
        --repo) [ $# -ge 2 ] || usage; repo=$2; shift 2 ;;
        --repo=*) repo=${1#*=}; shift ;;
        -h | --help) usage ;;
        *) echo "fetch-smolvlm: unknown argument $1" >&2; usage ;;
    esac
done
case "$variant" in
    "" | _fp16 | _int8 | _q4 | _q4f16 | _quantized | _uint8) ;;
    _bnb4)
        echo "fetch-smolvlm: _bnb4 graphs use the CUDA-only MatMulBnb4 operator, which glimpse refuses;" \
            "pick fp32 (--variant \"\"), _fp16, _int8, _q4, _q4f16, _quantized or _uint8" >&2
        exit 64 ;;
    *)
        echo "fetch-smolvlm: --variant is one of \"\" _fp16 _int8 _q4 _q4f16 _quantized _uint8, got \"$variant\"" >&2
        exit 64 ;;
esac
dir=${dir:-models/smolvlm2-256m${variant}}

# `hf` is huggingface_hub's newer command; `huggingface-cli` the older one,
# with the same download options.
if command -v hf >/dev/null; then
    download=(hf download)
elif command -v huggingface-cli >/dev/null; then
    download=(huggingface-cli download)
else
    echo "fetch-smolvlm: needs huggingface_hub's command line: pip install -U 'huggingface_hub[cli]'" >&2
    exit 69
fi
# Only the files glimpse reads: the JSON configs (config, generation,
# preprocessor, processor, tokenizer and its config, chat_template.json),
# chat_template.jinja where the repository has one, and the three graphs of
# one variant (with external data, should a repository have any). One
# --include with every pattern: a repeated --include replaces the previous.
"${download[@]}" "$repo" \
    --local-dir "$dir" \
    --include "*.json" "chat_template.jinja" \
        "onnx/vision_encoder${variant}.onnx*" \
        "onnx/embed_tokens${variant}.onnx*" \
        "onnx/decoder_model_merged${variant}.onnx*"

glimpse=${GLIMPSE:-glimpse}
if command -v "$glimpse" >/dev/null; then
    # Checks the folder and names the template file and variant it uses.
    "$glimpse" model inspect "$dir" --variant "$variant"
fi
echo "fetch-smolvlm: $dir is ready; set [model] path = \"$dir\" and variant = \"$variant\"" >&2
