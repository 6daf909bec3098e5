#!/usr/bin/env bash
# The embed stage on a GPU, as one prepared check for a machine that has torch and
# transformers but no FluidSynth, no soundfile and no internet.
#
#   bash benchmarks/gpu_embed_check.sh prepare   # here: render output + wheels into .device/
#   bash benchmarks/gpu_embed_check.sh run       # there: install the wheels, run the benchmark
#
# `prepare` copies the first PIECES (default 32) rendered pieces of results/audio/piano
# (render them first, e.g. with a full run) and downloads soundfile, cffi and pycparser
# wheels for the device's Python (DEVICE_PYTHON, default 3.12) into .device/, which git
# ignores through .git/info/exclude; carry `.device` to the device. `run` writes each
# benchmark's figures as JSON into $OUT (or .device/out): fp32, bf16 autocast, bf16
# weights, their drift from fp32 per layer, and a bf16-weights job over the pieces replicated REPLICATE times (default
# 300: 9,600 pieces, the 10,000-piece scale on one GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
PIECES=${PIECES:-32}

if [ "$mode" = prepare ]; then
  mkdir -p .device/audio .device/wheels
  grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
  for manifest in $(ls results/audio/piano/*.snippets.parquet | sort | head -n "$PIECES"); do
    piece=$(basename "$manifest" .snippets.parquet)
    cp "$manifest" "results/audio/piano/$piece.flac" .device/audio/
  done
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version "${DEVICE_PYTHON:-3.12}" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d .device/wheels soundfile cffi pycparser
  du -sh .device
  exit 0
fi

# DEVICE=cpu LIMIT=1 REPEATS=1 REPLICATE=2 PYTHON=.venv/bin/python runs the same steps on one piece
# here, to check the script before spending device time on it.
DEVICE=${DEVICE:-cuda}
limit=()
[ -z "${LIMIT:-}" ] || limit=(--pieces "$LIMIT")
OUT=${OUT:-.device/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
"$PY" -c "import soundfile" 2>/dev/null || "$PY" -m pip install -q --no-index --find-links .device/wheels soundfile
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
for precision in fp32 bf16 bf16-true; do
  echo "== precision $precision"
  "$PY" benchmarks/embed_throughput.py --audio .device/audio "${limit[@]}" --device "$DEVICE" --precision "$precision" \
    --threads 16 --repeats "${REPEATS:-3}" --json "$OUT/embed-$precision.json"
done
echo "== bf16 and bf16-true pooled vectors against fp32, per layer"
"$PY" benchmarks/precision_drift.py --audio .device/audio "${limit[@]}" --device "$DEVICE" --precisions bf16 bf16-true \
  --json "$OUT/precision-drift.json"
echo "== one bf16-true job over ${REPLICATE:-300} copies of every piece"
"$PY" benchmarks/embed_throughput.py --audio .device/audio "${limit[@]}" --device "$DEVICE" --precision bf16-true \
  --threads 16 --repeats 1 --replicate "${REPLICATE:-300}" --json "$OUT/embed-scale.json"
