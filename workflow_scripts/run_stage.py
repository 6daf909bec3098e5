# The one `script:` every rule runs. It imports the stage its rule names in `params.stage`
# (workflow_scripts/stages/<stage>.py) and runs that stage's `main` with the rule's files,
# its start, end and any traceback in the rule's log. Snakemake prepends its own preamble
# (which defines `snakemake`) to this file, so it holds nothing else.
import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parent))  # noqa: F821 - the repository root

from workflow_scripts.plumbing.job_log import run_job  # noqa: E402

stage = snakemake.params.stage  # noqa: F821
run_job(stage, importlib.import_module(f"workflow_scripts.stages.{stage}").main, snakemake)  # noqa: F821
