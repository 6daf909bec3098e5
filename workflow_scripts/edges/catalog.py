# Snakemake `script:` entry point: the logic lives in workflow_scripts/catalog.py.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821 - the repository root

from workflow_scripts.catalog import main  # noqa: E402
from workflow_scripts.job_log import run_job  # noqa: E402

run_job("catalog", main, snakemake)  # noqa: F821
