#!/usr/bin/env bash
# Refresh requirements/lock.txt: resolve pyproject.toml's dependencies and its test extra to
# the newest releases that fit, with exact versions and the SHA-256 of every file of each;
# then pin the conda envs (envs/*.yaml) to the same versions. requirements/no-deps.in lists the
# packages installed without their dependencies (basic-pitch, for its model file); they are
# pinned with hashes in requirements/no-deps.txt.
# Run it after editing pyproject.toml or requirements/torch.txt, then rerun the workflow:
# the README's figures are only as reproducible as the lock they were made with.
#
# torch stays out of the lock (the lock's header says why), but the resolution sees it: it is
# resolved against the CPU build of requirements/torch.txt's version, found through
# TORCH_FIND_LINKS (a folder or page of wheels; default: pip's find-links when set, as on
# machines with a local CPU wheel, else PyTorch's CPU wheel page). PyPI's Linux torch is the
# CUDA build, whose metadata would put the nvidia-* packages in the lock.
# Environment knobs: UV (a uv executable; default: uv on PATH, else UV_VERSION installed into
# a throwaway venv), PYTHON_VERSION (default 3.11, the version bootstrap.sh and CI use).
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
PYTHON_VERSION=${PYTHON_VERSION:-3.11}
PLATFORM=x86_64-manylinux_2_28
TORCH_FIND_LINKS=${TORCH_FIND_LINKS:-${PIP_FIND_LINKS:-https://download.pytorch.org/whl/cpu/torch/}}
LOCK=requirements/lock.txt
NO_DEPS_IN=requirements/no-deps.in
NO_DEPS=requirements/no-deps.txt

torch_pin=$(grep -E '^torch==[^ ]+$' requirements/torch.txt) || {
  echo "lock: requirements/torch.txt has no 'torch==<version>' line" >&2
  exit 1
}

if [ -z "${UV:-}" ]; then
  if command -v uv >/dev/null 2>&1; then
    UV=uv
  else
    uv_venv="${TMPDIR:-/tmp}/chorale-id-uv-$UV_VERSION"
    if [ ! -x "$uv_venv/bin/uv" ]; then
      echo "lock: installing uv==$UV_VERSION into $uv_venv"
      python3 -m venv "$uv_venv"
      "$uv_venv/bin/python" -m pip install -q "uv==$UV_VERSION"
    fi
    UV="$uv_venv/bin/uv"
  fi
fi

resolved=$(mktemp)
no_deps_resolved=$(mktemp)
trap 'rm -f "$resolved" "$no_deps_resolved"' EXIT
# The override swaps pyproject's torch requirement for the CPU build (local version +cpu);
# --no-emit-package keeps torch itself out of the output, its dependencies in.
"$UV" pip compile pyproject.toml --extra test \
  --generate-hashes --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM" \
  --find-links "$TORCH_FIND_LINKS" --override <(echo "${torch_pin}+cpu") --no-emit-package torch \
  --custom-compile-command "bash scripts/lock.sh" --quiet -o "$resolved"

if grep -qiE '^(nvidia-|triton==)' "$resolved"; then
  echo "lock: the resolution pulled CUDA packages; TORCH_FIND_LINKS ($TORCH_FIND_LINKS) did not offer the CPU build" >&2
  exit 1
fi

{
  cat <<EOF
# The pinned, hashed Python environment behind the README's figures. Refresh: bash scripts/lock.sh
# Installed by scripts/bootstrap.sh with pip install --require-hashes; UNPINNED=1 bypasses it.
#
# Everything pyproject.toml installs, test extra included, for CPython $PYTHON_VERSION on x86_64 Linux,
# except torch. torch is pinned by version only, in requirements/torch.txt: the same version
# comes as different files with different hashes (PyPI's Linux wheel is the CUDA build, which
# pulls a few GB of nvidia-* packages; the CPU build comes from PyTorch's index or a local
# wheel), so one hash cannot hold on every machine. The lock was resolved against $torch_pin's
# CPU build: torch's own dependencies are pinned here, no nvidia-* package is.
#
EOF
  cat "$resolved"
} > "$LOCK"
echo "lock: wrote $LOCK ($(grep -cE '^[A-Za-z0-9]' "$LOCK") packages, $torch_pin outside it)"

# The packages installed without their dependencies: their own files only, by hash.
"$UV" pip compile "$NO_DEPS_IN" --no-deps \
  --generate-hashes --python-version "$PYTHON_VERSION" --python-platform "$PLATFORM" \
  --custom-compile-command "bash scripts/lock.sh" --quiet -o "$no_deps_resolved"
{
  cat <<EOF
# Installed by scripts/bootstrap.sh with pip install --no-deps --require-hashes, after $LOCK.
# These packages' declared dependencies are NOT installed ($NO_DEPS_IN says why);
# what the project needs of them at run time is in $LOCK. Refresh: bash scripts/lock.sh
#
EOF
  cat "$no_deps_resolved"
} > "$NO_DEPS"
echo "lock: wrote $NO_DEPS ($(grep -cE '^[A-Za-z0-9]' "$NO_DEPS") packages, installed without their dependencies)"
# The conda envs of the rules (snakemake --use-conda) ask for the same versions.
python3 scripts/pin_conda_envs.py
