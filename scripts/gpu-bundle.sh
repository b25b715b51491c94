#!/usr/bin/env bash
# Makes the bundle that scripts/gpu-check.sh runs on a GPU machine with no
# Rust and no network: a stripped release `glimpse` with tract's CUDA
# backend and without GStreamer (that machine may have none), the demo
# model, one eval clip decoded to PNG frames (eval reads a frame folder
# without GStreamer), and the check script itself.
#
#   scripts/gpu-bundle.sh [OUT_DIR]        (default: target/gpu-bundle)
#
# Options through the environment:
#   CUDA_FEATURE=cuda-12   build for the CUDA 12.6 API (JetPack 6, CUDA 12
#                          libraries) instead of CUDA 13 (`cuda`)
#   GLIMPSE_BIN=PATH       use this release binary instead of building one
#   CLIP=eval-03           another clip of models/shapes/clips/eval/{dev,test}
#
# Needs here: cargo, gst-launch-1.0 (scripts/install-deps), strip, tar.
# Prints the bundle's size; it must stay under 64 MiB (what such a machine
# accepts per run).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/gpu-bundle}
FEATURE=${CUDA_FEATURE:-cuda}
CLIP=${CLIP:-eval-01}
LIMIT=$((64 * 1024 * 1024))

built="built with --features $FEATURE"
if [ -n "${GLIMPSE_BIN:-}" ]; then
    built="given as GLIMPSE_BIN"
else
    echo "gpu-bundle: cargo build --release --no-default-features --features $FEATURE" >&2
    cargo build --release --locked -p glimpse --bin glimpse --no-default-features --features "$FEATURE"
    GLIMPSE_BIN=target/release/glimpse
fi

rm -rf "$OUT"
mkdir -p "$OUT/clip"
cp "$GLIMPSE_BIN" "$OUT/glimpse"
strip "$OUT/glimpse"
cp -r models/shapes/model "$OUT/model"
cp scripts/gpu-check.sh "$OUT/gpu-check.sh"

# The clip at the model's size and the truth file's rate, as PNG frames;
# the truth file is copied pointing at the frame folder.
truth=$(ls models/shapes/clips/eval/*/"$CLIP".json)
read -r fps size video < <(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(t["fps"], t["size"], t["video"])' "$truth")
frames="$OUT/clip/$CLIP.frames"
mkdir -p "$frames"
gst-launch-1.0 -q filesrc location="$(dirname "$truth")/$video" ! decodebin ! videoconvert \
    ! videoscale ! videorate \
    ! "video/x-raw,format=RGB,width=$size,height=$size,pixel-aspect-ratio=1/1,framerate=$fps/1" \
    ! pngenc ! multifilesink location="$frames/%05d.png" >/dev/null
python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
t["video"] = sys.argv[2]
json.dump(t, open(sys.argv[3], "w"), indent=1)' "$truth" "$CLIP.frames" "$OUT/clip/$CLIP.json"

tarball="$OUT.tar.gz"
tar -C "$(dirname "$OUT")" -czf "$tarball" "$(basename "$OUT")"
bytes=$(du -sb "$OUT" | cut -f1)
packed=$(stat -c %s "$tarball")
echo "gpu-bundle: $OUT ($(ls "$frames" | wc -l) frames of $CLIP, glimpse $built)"
du -sh "$OUT/glimpse" "$OUT/model" "$OUT/clip" | sed 's/^/  /'
echo "gpu-bundle: $bytes bytes unpacked, $packed bytes as $tarball (limit $LIMIT)"
if [ "$bytes" -gt "$LIMIT" ] && [ "$packed" -gt "$LIMIT" ]; then
    echo "gpu-bundle: over 64 MiB" >&2
    exit 1
fi
