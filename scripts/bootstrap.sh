#!/usr/bin/env bash
# Set up everything the workflow and its tests need, idempotently:
#   - Debian packages: FluidSynth's library and a General MIDI SoundFont (if missing);
#   - a virtual environment in .venv with this project and its Python dependencies, at the
#     exact versions and hashes of requirements/lock.txt (torch: requirements/torch.txt).
# Environment knobs: PYTHON (interpreter for the venv, default python3),
# TORCH_SPEC (default: requirements/torch.txt's pin), SKIP_APT=1 to leave system packages alone,
# WITH_SLURM=1 to add slurm-wlm and munge (for the cluster test, `pytest -m slurm`),
# WITH_BROWSER=1 to add chromium (tests/test_report_page.py lays the report out in it),
# UNPINNED=1 to install the newest releases that pyproject.toml allows instead of the lock.
set -euo pipefail
cd "$(dirname "$0")/.."

# timgm6mb-soundfont: configs/identification.yaml's other synthesiser (the same piano from another SoundFont).
APT_PACKAGES=(libfluidsynth3 fluid-soundfont-gm timgm6mb-soundfont)
[ "${WITH_SLURM:-0}" != 1 ] || APT_PACKAGES+=(slurm-wlm munge)
[ "${WITH_BROWSER:-0}" != 1 ] || APT_PACKAGES+=(chromium)
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-$(grep -E '^torch==' requirements/torch.txt || true)}
LOCK=requirements/lock.txt
# Installed without their dependencies (basic-pitch: only its ONNX model file is used; its declared
# dependencies would pull TensorFlow). pip check is told to expect their missing dependencies.
NO_DEPS=requirements/no-deps.txt
NO_DEPS_PACKAGES=$(grep -oE '^[A-Za-z0-9][A-Za-z0-9._-]*' "$NO_DEPS" | paste -sd '|')
[ -n "$TORCH_SPEC" ] || { echo "bootstrap: requirements/torch.txt has no 'torch==<version>' line" >&2; exit 1; }

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
  .venv/bin/python -m pip install -q --upgrade pip
fi
if [ "${UNPINNED:-0}" = 1 ]; then
  # torch first and alone keeps pip from choosing another (multi-GB) build while resolving
  # the rest; naming it again holds it while everything else moves to its newest release.
  echo "bootstrap: installing the newest releases (UNPINNED=1), $TORCH_SPEC"
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
  .venv/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e ".[test]" "$TORCH_SPEC"
  .venv/bin/python -m pip install -q --no-deps -r requirements/no-deps.in
else
  # The lock first: it holds every dependency, torch's included, so installing torch after it
  # adds torch alone (and, for a CUDA build, its nvidia-* packages). The project goes in last,
  # without dependencies, built by the lock's setuptools.
  echo "bootstrap: installing $LOCK and $TORCH_SPEC"
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r "$LOCK"
  .venv/bin/python -m pip install -q --require-hashes --no-deps -r "$NO_DEPS"
  .venv/bin/python -m pip install -q "$TORCH_SPEC"
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  # The no-deps packages' missing dependencies are expected; any other conflict is not.
  conflicts=$(.venv/bin/python -m pip check 2>&1 | grep -viE "^($NO_DEPS_PACKAGES) |^No broken requirements" || true)
  [ -z "$conflicts" ] || {
    echo "$conflicts" >&2
    echo "bootstrap: the installed packages conflict (above): is $LOCK out of date? Refresh it: bash scripts/lock.sh" >&2
    exit 1
  }
fi
echo "bootstrap: ready ($(.venv/bin/python -c 'import torch, snakemake; print("torch", torch.__version__, "snakemake", snakemake.__version__)'))"
