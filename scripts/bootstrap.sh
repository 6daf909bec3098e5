#!/usr/bin/env bash
# Set up everything the workflow and its tests need, idempotently:
#   - Debian packages: FluidSynth's library and a General MIDI SoundFont (if missing);
#   - a virtual environment in .venv with this project and its Python dependencies.
# Environment knobs: PYTHON (interpreter for the venv, default python3),
# TORCH_SPEC (default torch==2.13.0), SKIP_APT=1 to leave system packages alone,
# WITH_SLURM=1 to add slurm-wlm and munge (for the cluster test, `pytest -m slurm`).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libfluidsynth3 fluid-soundfont-gm)
[ "${WITH_SLURM:-0}" != 1 ] || APT_PACKAGES+=(slurm-wlm munge)
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

missing=()
if [ "${SKIP_APT:-0}" != 1 ] && command -v dpkg >/dev/null 2>&1; then
  for package in "${APT_PACKAGES[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo_prefix=()
  [ "$(id -u)" -eq 0 ] || sudo_prefix=(sudo)
  "${sudo_prefix[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_prefix[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $PYTHON"
  "$PYTHON" -m venv .venv
fi
# Installing torch first and alone keeps pip from choosing another (multi-GB) build
# while resolving the rest.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "bootstrap: installing $TORCH_SPEC"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
fi
.venv/bin/python -m pip install -q -e ".[test]"
echo "bootstrap: ready ($(.venv/bin/python -c 'import torch, snakemake; print("torch", torch.__version__, "snakemake", snakemake.__version__)'))"
