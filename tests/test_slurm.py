"""The workflow through the SLURM profile on a real single-node SLURM cluster.

Opt-in (``-m slurm``): it starts slurmctld, slurmd and munged from Debian's packages,
which needs root; `.ci/run` installs them and runs it. If the daemons cannot start, the
test fails with the reason: it never skips.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from mert_fixture import build_small_mert
from slurm_cluster import start_cluster, stop_cluster
from workflow_runner import REPO_ROOT, local_rule_patterns, make_project, snakemake

pytestmark = pytest.mark.slurm
# Rules that run on the submit host (cheap gathers, the weight download, the report), as
# the workflow declares them: a list kept here went stale when `preconditions` was added.
LOCAL_RULES = local_rule_patterns()
STARTED = re.compile(r"rule (\S+) started on \S+ (?:in SLURM job (\d+)|outside SLURM)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    yield cluster
    stop_cluster(cluster)


def make_mert_project(folder: Path, model: Path) -> Path:
    return make_project(
        folder,
        {
            "embedders": ["spectral", "mert"],
            "embedder_settings": {"mert": {"local_dir": str(model), "batch_size": 4}},
            "probes": {"linear_lbfgs_std": {"optimizer": "lbfgs", "normalization": "standardize"}},
            "sweep": {"grid": {}},
            # The GPU jobs to the gpu partition, as docs/cluster.md shows; the rest to the default.
            "stage_resources": {"gpu_jobs": {"slurm_partition": "gpu"}},
        },
    )


# The node size the test tells Snakemake (docs/cluster.md, "Sizing submissions"): every
# submission must fit it, grouped batches included (4 render batches would ask for 8 GB).
NODE_MEM_MB = 2000


def megabytes(slurm_memory: str) -> int:
    """``2000M`` or ``2G`` (scontrol's MinMemoryNode) in MB."""
    return int(float(slurm_memory[:-1]) * {"M": 1, "G": 1024, "T": 1024**2}[slurm_memory[-1]])


def is_local(rule: str) -> bool:
    return any(pattern.fullmatch(rule) for pattern in LOCAL_RULES)


def jobs_from_logs(project: Path) -> list[tuple[str, str | None]]:
    """(rule, SLURM job id or None) for every job, from the first line of each rule log."""
    jobs = []
    for log in sorted((project / "results/logs").rglob("*.log")):
        started = STARTED.search(log.read_text())
        assert started, f"{log} does not say where its job ran"
        jobs.append((started.group(1), started.group(2)))
    return jobs


def test_the_slurm_profile_runs_every_job_through_sbatch(cluster, tmp_path):
    model = tmp_path / "mert-model"
    build_small_mert(model)
    on_slurm = make_mert_project(tmp_path / "on-slurm", model)
    completed = snakemake(
        on_slurm,
        "--workflow-profile",
        str(REPO_ROOT / "profiles/slurm"),
        "--slurm-no-account",
        "--slurm-status-command",
        "squeue",
        "--default-resources",
        "slurm_partition=cpu",
        "runtime=30",
        "mem_mb=2000",
        "--cores",
        str(cluster.cpus),
        "--resources",
        "gpu=1",
        f"mem_mb={NODE_MEM_MB}",
        "--latency-wait",
        "5",
        env=cluster.environment,
        timeout=1500,
    )
    output = completed.stdout + completed.stderr
    slurm_jobs = cluster.jobs()
    print(
        f"{len(slurm_jobs)} SLURM submissions:",
        *(f"  {job}: {comment}" for job, comment in slurm_jobs.items()),
        sep="\n",
    )

    jobs = jobs_from_logs(on_slurm)
    on_compute_nodes = {(rule, job) for rule, job in jobs if not is_local(rule)}
    assert on_compute_nodes, output[-4000:]
    assert all(job in slurm_jobs for _, job in on_compute_nodes), (on_compute_nodes, slurm_jobs)
    assert all(job is None for rule, job in jobs if is_local(rule)), jobs
    assert {"classify", "retrieval", "geometry"} <= {rule for rule, _ in on_compute_nodes}
    # Grouping: the render and embed batches went in fewer submissions than there are batches.
    batch_jobs = {job for rule, job in on_compute_nodes if rule.startswith(("render_", "embed_"))}
    assert len(batch_jobs) < len([rule for rule, _ in on_compute_nodes if rule.startswith(("render_", "embed_"))])

    asked_for_gpu = {
        job for job in slurm_jobs if "gres/gpu" in cluster.job_details(job) or "gres:gpu" in cluster.job_details(job)
    }
    mert_jobs = {job for rule, job in on_compute_nodes if rule.startswith("embed_mert_")}
    assert mert_jobs and asked_for_gpu == mert_jobs, (asked_for_gpu, mert_jobs)
    partitions = {job: cluster.job_field(job, "Partition") for job in slurm_jobs}
    assert {job for job, partition in partitions.items() if partition == "gpu"} == mert_jobs, partitions
    assert set(partitions.values()) == {"cpu", "gpu"}, partitions
    for job in slurm_jobs:
        cpus, memory = int(cluster.job_field(job, "NumCPUs")), megabytes(cluster.job_field(job, "MinMemoryNode"))
        assert cpus <= cluster.cpus and memory <= NODE_MEM_MB, (job, cpus, memory, cluster.job_details(job))
    print(
        "GPU requested by:",
        *(f"  {job}: {cluster.job_details(job).split('TresPerJob=')[1].split()[0]}" for job in sorted(asked_for_gpu)),
        sep="\n",
    )

    locally = make_mert_project(tmp_path / "locally", model)
    # As many cores as the cluster's node: Snakemake gives a job min(its threads, cores) threads,
    # and torch's sums depend on the thread count, so on a host with more than 2 CPUs a 2-core
    # local run would compute MERT's vectors with fewer threads than the SLURM job did.
    snakemake(locally, "--cores", str(cluster.cpus), "--resources", "gpu=1")
    assert {rule for rule, _ in jobs_from_logs(locally)} == {rule for rule, _ in jobs}
    for embedder in ("spectral", "mert"):
        relative = f"results/datasets/{embedder}/piano/embeddings.parquet"
        assert pq.read_table(on_slurm / relative).equals(pq.read_table(locally / relative)), relative
        metrics = f"results/probes/{embedder}/piano/by_snippet/linear_lbfgs_std/metrics.json"
        first, second = (json.loads((root / metrics).read_text()) for root in (on_slurm, locally))
        assert (first["top1"], first["top5"]) == (second["top1"], second["top5"])
    print("identical to a local run: datasets and metrics of", ", ".join(("spectral", "mert")))
