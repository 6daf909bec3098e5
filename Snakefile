# chorale-id: Bach chorales -> FluidSynth audio -> frozen embeddings -> piece-identification probes.
# This file only loads and validates the config, includes the stages and names the default targets.

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

from workflow_scripts.embedders.declaration import DeclarationError
from workflow_scripts.embedders.schema import workflow_schema_file

min_version("9.0")


configfile: "config.yaml"


report: "report/workflow.rst"


# config.schema.yaml with the embedder part each embedder module declares (docs/extending.md).
try:
    SCHEMA_FILE = workflow_schema_file()
except DeclarationError as error:
    raise WorkflowError(f"embedders: {error}") from None


validate(config, SCHEMA_FILE, set_default=True)


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/render.smk"
include: "rules/embed.smk"
include: "rules/dataset.smk"
include: "rules/transfer.smk"
include: "rules/classify.smk"
include: "rules/evaluate.smk"
include: "rules/identify.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        default_targets(),
    localrule: True
