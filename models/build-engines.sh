#!/usr/bin/env bash
# Builds the TensorRT engines of the configured model ahead of time, on the
# device that will run them (engines are specific to the GPU, TensorRT and
# ONNX Runtime versions), so that the service starts in seconds instead of
# compiling for minutes at its first start.
#
# It runs `glimpse model warmup` on the config: the model is loaded exactly
# as `glimpse run` loads it (same providers, same shape profiles up to
# model.max_context) and run once; TensorRT writes its engines and timing
# cache to <state_dir>/engines/<graph>-<key>/. A second warm-up then shows
# the load time with the cache.
#
# Usage: models/build-engines.sh [CONFIG]     (default /etc/glimpse/glimpse.toml)
#   GLIMPSE=path/to/glimpse   the binary (default: glimpse on PATH)
#   STATE_DIRECTORY=DIR       where the service keeps its state when the
#                             config has no service.state_dir (default
#                             /var/lib/glimpse, systemd's StateDirectory=)
# Run it as the service user so that the cache belongs to it, e.g.
#   sudo -u glimpse models/build-engines.sh
set -euo pipefail

config=${1:-/etc/glimpse/glimpse.toml}
glimpse=${GLIMPSE:-glimpse}
export STATE_DIRECTORY=${STATE_DIRECTORY:-/var/lib/glimpse}

if ! grep -Eq '^[[:space:]]*\[model\]' "$config"; then
    echo "build-engines: $config has no [model] table" >&2
    exit 78
fi
# The warm-up must name the provider; a silent CPU fallback builds nothing.
export RUST_LOG=${RUST_LOG:-info}

echo "build-engines: building (the first TensorRT build takes minutes)" >&2
"$glimpse" model warmup --config "$config"
echo "build-engines: again, from the cache" >&2
"$glimpse" model warmup --config "$config"
if [ -d "$STATE_DIRECTORY/engines" ]; then
    du -sh "$STATE_DIRECTORY"/engines/* 2>/dev/null || true
fi
