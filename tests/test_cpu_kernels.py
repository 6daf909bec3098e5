"""The numerics tests hold whichever kernels the CPU gives them.

oneDNN and ATen pick their kernels from the CPU's instruction sets (AVX2, AVX-512, AVX512-BF16,
AMX), and bf16 results differ between them in more than the last bit. So the bf16 tests run
again here with oneDNN capped at AVX2 and at AVX512_CORE, and ATen's own vectorised kernels
capped to match: on a CPU with AMX that is three kernel paths (the main run is the third); on
a CPU without, a cap above what it has changes nothing and the run repeats the default path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# oneDNN's cap and ATen's matching one. ATen's levels run default < avx2 < avx512.
KERNEL_CAPS = {"AVX2": "avx2", "AVX512_CORE": "avx512"}
ATEN_LEVELS = ("default", "avx2", "avx512")
BF16_TESTS = "bf16 or widths or normalisation"


def aten_cap(wanted: str) -> str:
    """ATen's cap, never above what this CPU has: unlike oneDNN's, a cap above the CPU is not
    ignored but runs instructions it lacks (SIGILL)."""
    import torch

    available = torch.backends.cpu.get_cpu_capability().lower()
    available = available if available in ATEN_LEVELS else "default"
    return min(wanted, available, key=ATEN_LEVELS.index)


@pytest.mark.parametrize("onednn_isa", sorted(KERNEL_CAPS))
def test_bf16_tests_hold_with_kernels_capped_at(onednn_isa):
    caps = {"ONEDNN_MAX_CPU_ISA": onednn_isa, "ATEN_CPU_CAPABILITY": aten_cap(KERNEL_CAPS[onednn_isa])}
    environment = {**os.environ, **caps}
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_embed.py", "-q", "-p", "no:cacheprovider", "-k", BF16_TESTS],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-2000:]
    assert " passed" in completed.stdout and "deselected" in completed.stdout
