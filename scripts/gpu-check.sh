#!/usr/bin/env bash
# The GPU check of tract's CUDA backend, run from the bundle that
# scripts/gpu-bundle.sh makes (glimpse, model/, clip/, this script) on a
# machine with an NVIDIA GPU, its driver and Python with PyTorch: no Rust,
# no network, no GStreamer needed.
#
#   ./gpu-check.sh OUT_DIR
#
# It records the card, driver and CUDA version (nvidia-smi, torch), finds
# the CUDA libraries and headers tract-cuda opens at run time (a system
# toolkit, else the nvidia-* wheels PyTorch installed), then runs
# `glimpse model warmup` and `glimpse eval` on tract-cuda and on tract's
# CPU kernels, and writes into OUT_DIR: gpu.txt (card, driver, CUDA),
# placement.txt (per graph: nodes on the GPU, ops left on the CPU), the
# logs of every run, and summary.txt (scores side by side, which must agree
# within 1 point of accuracy per setting, and GPU/CPU time ratios for the
# encoder, prefill and decode, and peak GPU memory).
#
# GPU_CHECK_CPU_ONLY=1 runs the "GPU" side on the CPU as well (backend
# tract): a rehearsal of every step on a machine without a GPU. Without it,
# a machine without a usable GPU stops after saying what is missing
# (exit 2). Exit 1: a run failed or the scores disagree.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: gpu-check.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
GLIMPSE="$HERE/glimpse"
CPU_ONLY=${GPU_CHECK_CPU_ONLY:-0}
say() { echo "gpu-check: $*" | tee -a "$OUT/summary.txt" >&2; }
: >"$OUT/summary.txt"
for need in "$GLIMPSE" "$HERE/model/config.json"; do
    [ -e "$need" ] || { say "missing $need: run this from the bundle of scripts/gpu-bundle.sh"; exit 1; }
done
# tract's compiled CUDA kernels are cached here, not in the user's home.
export XDG_CACHE_HOME="$OUT/cache"

# 1. The card, driver and CUDA version.
gpu=yes
if ! command -v nvidia-smi >/dev/null; then
    gpu="no: nvidia-smi not found (no NVIDIA driver installed)"
elif ! nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1; then
    gpu="no: nvidia-smi failed: $(head -n1 "$OUT/nvidia-smi.txt")"
else
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >"$OUT/gpu.txt" 2>&1 || true
    grep -o "CUDA Version: [0-9.]*" "$OUT/nvidia-smi.txt" >>"$OUT/gpu.txt" || true
fi
python3 - >>"$OUT/gpu.txt" 2>&1 <<'EOF' || true
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.version.cuda,
          "device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
except Exception as e:
    print("torch: not usable:", e)
EOF
say "GPU: $gpu"
[ -s "$OUT/gpu.txt" ] && sed 's/^/  /' "$OUT/gpu.txt" | tee -a "$OUT/summary.txt" >&2

# 2. The CUDA libraries (driver, cudart, NVRTC, cuBLAS, cuDNN) and headers
# (cuda_fp16.h, CCCL) tract-cuda opens: a toolkit in CUDA_HOME or
# /usr/local/cuda, else the nvidia-* wheels next to torch, merged into one
# include folder for NVRTC.
python3 - "$OUT" >"$OUT/cuda-env.sh" 2>"$OUT/cuda-env.log" <<'EOF' || true
import glob, os, sys, site
out = sys.argv[1]
roots = []
for base in site.getsitepackages() + [site.getusersitepackages()]:
    roots += glob.glob(os.path.join(base, "nvidia"))
libs = sorted({os.path.dirname(p) for r in roots for p in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True)})
if libs:
    print("export LD_LIBRARY_PATH=%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" % ":".join(libs))
home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
if not home and os.path.exists("/usr/local/cuda/include/cuda_fp16.h"):
    home = "/usr/local/cuda"
if not home:
    incs = sorted({os.path.dirname(p) for r in roots for p in glob.glob(os.path.join(r, "**", "include", "*"), recursive=True)})
    merged = os.path.join(out, "cuda_home", "include")
    os.makedirs(merged, exist_ok=True)
    for inc in incs:
        for name in os.listdir(inc):
            link = os.path.join(merged, name)
            if not os.path.lexists(link):
                os.symlink(os.path.join(inc, name), link)
    if os.path.exists(os.path.join(merged, "cuda_fp16.h")):
        home = os.path.join(out, "cuda_home")
        print("# headers merged from", " ".join(incs), file=sys.stderr)
if home:
    print("export CUDA_HOME=%s" % home)
print("# nvidia wheel roots:", roots, file=sys.stderr)
EOF
# shellcheck disable=SC1091
. "$OUT/cuda-env.sh"
say "CUDA_HOME=${CUDA_HOME:-none found} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

# 3. Runs: warm-up (one frame, a short answer, twice) and eval, per side.
config() { # backend require_gpu -> config file
    local f="$OUT/glimpse-$1.toml"
    cat >"$f" <<EOF
[service]
state_dir = "$OUT/state-$1"
[mqtt]
listen = "127.0.0.1:0"
[model]
path = "$HERE/model"
backend = "$1"
require_gpu = $2
threads = ${GPU_CHECK_THREADS:-2}
[cameras.check]
source = { kind = "synthetic" }
EOF
    echo "$f"
}
gpu_backend=tract-cuda
require=true
if [ "$CPU_ONLY" = 1 ]; then
    gpu_backend=tract
    require=false
    say "GPU_CHECK_CPU_ONLY=1: the GPU side runs on tract's CPU kernels (a rehearsal)"
fi

mem_sampler() { # file: peak GPU memory used (MiB) while it runs
    [ "$gpu" = yes ] || return 0
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$1" 2>/dev/null &
    echo $!
}

# tract-cuda first: without a usable GPU, say what is missing and stop.
cfg=$(config "$gpu_backend" "$require")
base=$( [ "$gpu" = yes ] && nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -n1 || echo 0)
sampler=$(mem_sampler "$OUT/gpu-memory.csv")
set +e
"$GLIMPSE" model warmup --config "$cfg" >"$OUT/warmup-gpu.txt" 2>"$OUT/warmup-gpu.log"
status=$?
set -e
[ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null || true
if [ $status -ne 0 ]; then
    say "glimpse model warmup on $gpu_backend failed (exit $status):"
    grep -E "error|WARN" "$OUT/warmup-gpu.log" | tail -n 5 | sed 's/^/  /' | tee -a "$OUT/summary.txt" >&2
    if [ "$gpu" != yes ]; then
        say "STOP: no GPU on this machine ($gpu); nothing to compare. GPU_CHECK_CPU_ONLY=1 rehearses the rest on the CPU."
        exit 2
    fi
    exit 1
fi
grep "graph placed by tract-cuda\|graph on the CPU" "$OUT/warmup-gpu.log" >"$OUT/placement.txt" || true
"$GLIMPSE" model warmup --config "$(config tract false)" >"$OUT/warmup-cpu.txt" 2>"$OUT/warmup-cpu.log" ||
    { say "glimpse model warmup on the CPU failed: see $OUT/warmup-cpu.log"; exit 1; }

clip=$(ls "$HERE"/clip/*.json | head -n1)
eval_args=(--model "$HERE/model" --tau 0.5 --reference last_kept --memory 4,8,24 --json)
timed() { # name backend -> seconds on stdout
    local start end
    start=$(date +%s.%N)
    "$GLIMPSE" eval "$clip" "${eval_args[@]}" --backend "$2" >"$OUT/eval-$1.json" 2>"$OUT/eval-$1.log"
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.2f}')"
}
say "eval of $(basename "$clip") on $gpu_backend, then on tract (CPU)"
t_gpu=$(timed gpu "$gpu_backend") || { say "eval on $gpu_backend failed: see $OUT/eval-gpu.log"; exit 1; }
t_cpu=$(timed cpu tract) || { say "eval on the CPU failed: see $OUT/eval-cpu.log"; exit 1; }

# 4. The summary: placement, scores, ratios, memory.
python3 - "$OUT" "$t_gpu" "$t_cpu" "$base" <<'EOF' | tee -a "$OUT/summary.txt"
import json, re, sys
out, t_gpu, t_cpu, base = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def warm(side):
    text = open(f"{out}/warmup-{side}.txt").read()
    runtime = re.search(r"runtime\s+(.*)", text).group(1)
    m = re.search(r"second run\s+encoder (\d+) ms, prefill (\d+) tokens (\d+) ms, (\d+) tokens decoded in (\d+) ms", text)
    enc, ptok, pms, ntok, dms = map(float, m.groups())
    return runtime, enc, ptok / max(pms, 1e-9) * 1e3, dms / max(ntok, 1)
g, c = warm("gpu"), warm("cpu")
print(f"runtime  gpu side: {g[0]}\n         cpu side: {c[0]}")
print("placement:")
for line in open(f"{out}/placement.txt"):
    m = re.search(r'graph=(\S+).*?(placement=.*|graph on the CPU.*)', line)
    print("  ", m.group(1) + ":", m.group(2)) if m else print("  ", line.strip())
print(f"{'warm-up (second run)':<24}{'gpu side':>12}{'cpu side':>12}{'gpu/cpu':>9}")
for name, i, unit in [("encoder ms/frame", 1, "ms"), ("prefill tokens/s", 2, "/s"), ("decode ms/token", 3, "ms")]:
    print(f"{name:<24}{g[i]:>12.1f}{c[i]:>12.1f}{g[i] / max(c[i], 1e-9):>9.2f}")
print(f"{'eval wall time s':<24}{t_gpu:>12.2f}{t_cpu:>12.2f}{t_gpu / max(t_cpu, 1e-9):>9.2f}")
eg, ec = (json.load(open(f"{out}/eval-{s}.json")) for s in ("gpu", "cpu"))
worst = 0.0
print(f"eval: {ec['clips']} clip, {ec['questions']} questions per setting")
for sg, sc in zip(eg["settings"], ec["settings"]):
    acc = lambda s: sum(r for r, a in s["tasks"].values()) / max(sum(a for r, a in s["tasks"].values()), 1)
    d = abs(acc(sg) - acc(sc)) * 100
    worst = max(worst, d)
    print(f"  {sg['setting']:<44} gpu {100 * acc(sg):5.1f}%  cpu {100 * acc(sc):5.1f}%  diff {d:.1f}")
try:
    peak = max(int(v) for v in open(f"{out}/gpu-memory.csv").read().split() if v.strip().isdigit())
    print(f"GPU memory used by the warm-up: {peak - int(base)} MiB (peak {peak}, before {base})")
except (FileNotFoundError, ValueError):
    print("GPU memory: not measured (no GPU)")
verdict = "AGREE" if worst <= 1.0 else "DISAGREE"
print(f"scores {verdict}: largest difference {worst:.1f} points (limit 1)")
sys.exit(0 if worst <= 1.0 else 1)
EOF
