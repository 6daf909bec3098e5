"""A real single-node SLURM cluster on this machine, for the tests (Debian's slurm-wlm, munge).

slurmctld and slurmd run on localhost from a configuration written into a temporary
folder: one node with this machine's CPUs and memory and one count-only ``gpu`` GRES (so
GPU requests are schedulable without a GPU), in two partitions, ``cpu`` (the default) and
``gpu``, as a cluster with GPU nodes apart would have them; no accounting database, and ``MinJobAge``
high enough for Snakemake to read finished jobs' states with ``squeue``. Must run as root
(the daemons' user).

The configuration goes to SLURM's default place, /etc/slurm: the SLURM plugin's job-step
executor strips ``SLURM_*`` variables (``SLURM_CONF`` included) before its inner ``srun``,
so a configuration anywhere else is not found inside jobs. An /etc/slurm/slurm.conf that
these tests did not write is never overwritten: the cluster refuses to start instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SLURM_CONF = """\
ClusterName=chorale
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldPort={controller_port}
SlurmdPort={node_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/backfill
NodeName={host} CPUs={cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP
"""
# slurmd 22.05 drops a gpu GRES that has no device file and then drains the node (its
# configured gres count no longer matches), so a count-only GPU needs File=; /dev/null
# stands in for one (no GPU is used).
CONFIG_FOLDER = Path("/etc/slurm")
OURS = "# written by chorale-id's tests (tests/slurm_cluster.py)\n"
GRES_CONF = "AutoDetect=off\nNodeName={host} Name=gpu File=/dev/null Count=1\n"


class ClusterError(RuntimeError):
    pass


@dataclass
class SlurmCluster:
    root: Path
    host: str
    cpus: int

    @property
    def environment(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(CONFIG_FOLDER / "slurm.conf")}

    def run(self, *command: str) -> str:
        completed = subprocess.run(command, env=self.environment, capture_output=True, text=True, timeout=60)
        if completed.returncode != 0:
            raise ClusterError(f"{' '.join(command)} failed: {completed.stderr.strip()}")
        return completed.stdout

    def jobs(self) -> dict[str, str]:
        """Every job the controller knows (finished ones too, for MinJobAge): id -> comment."""
        lines = self.run("squeue", "--states=all", "--noheader", "--format=%i|%k").splitlines()
        return dict(line.strip().split("|", 1) for line in lines if line.strip())

    def job_details(self, job_id: str) -> str:
        return self.run("scontrol", "show", "job", job_id)

    def job_field(self, job_id: str, field: str) -> str:
        """One ``Field=value`` of ``scontrol show job``, e.g. Partition, NumCPUs, MinMemoryNode."""
        for word in self.job_details(job_id).split():
            if word.startswith(f"{field}="):
                return word.split("=", 1)[1]
        raise ClusterError(f"job {job_id} has no {field} in scontrol show job")

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.root / name).read_text(errors='replace')[-3000:]}"
            for name in ("slurmctld.log", "slurmd.log")
            if (self.root / name).exists()
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    return int(total_kb / 1024 * 0.9)


def start_cluster(root: Path) -> SlurmCluster:
    """Start munged (if needed), slurmctld and slurmd; wait until the node is idle."""
    missing = [
        tool for tool in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "scontrol") if shutil.which(tool) is None
    ]
    if missing:
        raise ClusterError(f"SLURM tools missing: {missing}; install them with `apt-get install slurm-wlm munge`")
    if os.geteuid() != 0:
        raise ClusterError("the test cluster's daemons must be started as root")
    host = socket.gethostname().split(".")[0]
    for folder in ("state", "spool"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    settings = {
        "host": host,
        "root": root,
        "cpus": os.cpu_count(),
        "memory_mb": _node_memory_mb(),
        "controller_port": _free_port(),
        "node_port": _free_port(),
    }
    existing = CONFIG_FOLDER / "slurm.conf"
    if existing.exists() and not existing.read_text().startswith(OURS):
        raise ClusterError(
            f"{existing} exists and was not written by these tests; refusing to replace a real SLURM configuration"
        )
    if existing.exists():
        # A test run killed before its teardown leaves its daemons behind: they use our
        # configuration, so they are ours to stop.
        subprocess.run(["pkill", "-x", "slurmctld"], capture_output=True)
        subprocess.run(["pkill", "-x", "slurmd"], capture_output=True)
        time.sleep(1)
    CONFIG_FOLDER.mkdir(parents=True, exist_ok=True)
    (CONFIG_FOLDER / "slurm.conf").write_text(OURS + SLURM_CONF.format(**settings))
    (CONFIG_FOLDER / "gres.conf").write_text(OURS + GRES_CONF.format(**settings))
    cluster = SlurmCluster(root, host, settings["cpus"])

    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["sudo", "-u", "munge", "munged"] if shutil.which("sudo") else ["munged", "--force"], check=True)
    environment = cluster.environment
    subprocess.run(["slurmctld"], env=environment, check=True)
    subprocess.run(["slurmd"], env=environment, check=True)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            state = cluster.run("sinfo", "--noheader", "--format=%T").split()
        except ClusterError:
            state = []
        if state and set(state) == {"idle"}:
            return cluster
        time.sleep(1)
    stop_cluster(cluster)
    raise ClusterError(f"the SLURM node did not become idle within 60 s (state {state!r})\n{cluster.logs()}")


def stop_cluster(cluster: SlurmCluster) -> None:
    subprocess.run(["scancel", "--user", "root"], env=cluster.environment, capture_output=True)
    subprocess.run(["scontrol", "shutdown"], env=cluster.environment, capture_output=True)
    for pid_file in ("slurmd.pid", "slurmctld.pid"):
        path = cluster.root / pid_file
        if path.exists():
            try:
                os.kill(int(path.read_text().strip()), 15)
            except (ProcessLookupError, ValueError):
                pass
    for name in ("slurm.conf", "gres.conf"):
        path = CONFIG_FOLDER / name
        if path.exists() and path.read_text().startswith(OURS):
            path.unlink()
