# Snakemake `script:` entry point: the logic lives in workflow_scripts/report.py.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1]))  # noqa: F821 - the repository root

from workflow_scripts.report import main  # noqa: E402

main(snakemake)  # noqa: F821
