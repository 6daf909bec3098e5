# Piece list, batches, every output path, and wildcard constraints: built here only.

import re
import sys

# The Snakefile's own imports; script jobs put the repository on their path in
# workflow_scripts/run_stage.py.
sys.path.insert(0, workflow.basedir)

from snakemake.exceptions import WorkflowError

from workflow_scripts.stages.corpus import CorpusError, discover_sources

# Each rule's params hold stage_code_digest(<its stage>) beside the stage's name, because
# Snakemake watches only the script file (run_stage.py); without the digest an edit to
# workflow_scripts/stages/<stage>.py or to what it imports would leave stale results up to date.
from workflow_scripts.embedders.registry import declaration as embedder_declaration
from workflow_scripts.embedders.registry import needs_gpu, needs_weights, stage_code_digest
from workflow_scripts.plumbing.settings import (
    CLOSED_SET_SPLITS as CLOSED_SET_SPLIT_NAMES,
    complete_config,
    configured_transfers,
    embedder_settings,
    load_schema,
    render_settings,
    soundfont_setting,
)
from workflow_scripts.music.synth import SynthError, resolve_soundfont
from workflow_scripts.identification.matching import LEARNED as LEARNED_MATCHERS, check_matchers
from workflow_scripts.pooling import pooling_code_modules
from workflow_scripts.probes.kinds import is_iterative, kinds_code_modules, selects_on_validation

try:
    complete_config(config, load_schema())
except ValueError as error:
    raise WorkflowError(f"config: {error}") from None

try:
    SOURCES = discover_sources(config["corpus"])
except CorpusError as error:
    raise WorkflowError(f"config 'corpus': {error}") from None
PIECES = [source.piece_id for source in SOURCES]
SOURCE_OF = {source.piece_id: str(source.path) for source in SOURCES}
TUNE_OF = {source.piece_id: source.tune_index for source in SOURCES}
VARIANTS = list(config["variants"])
EMBEDDERS = list(config["embedders"])
SPLITS = list(config["splits"]["names"])
CLOSED_SET_SPLITS = [split for split in SPLITS if split in CLOSED_SET_SPLIT_NAMES]
OPEN_SET_SPLITS = [split for split in SPLITS if split not in CLOSED_SET_SPLIT_NAMES]
if CLOSED_SET_SPLITS and not config["splits"]["overlap_guard"]:
    from snakemake.logging import logger

    logger.warning(
        "splits.overlap_guard is false: by_snippet test snippets may share measures with training snippets, "
        "and every probe metric of this run is marked leaky (summary.tsv, metrics.json, the report)."
    )
PROBES = list(config["probes"])
try:
    TRANSFERS = configured_transfers(config)
except ValueError as error:
    raise WorkflowError(f"config: {error}") from None
CACHE = config["cache_dir"]
# Identification (rules/identify.smk): whole-piece renderings, each queried against the reference.
IDENTIFICATION = config["identification"]
try:
    check_matchers(IDENTIFICATION["matchers"])
except ValueError as error:
    raise WorkflowError(f"config: {error}") from None
ID_RENDERINGS = list(IDENTIFICATION["renderings"]) if IDENTIFICATION["enabled"] else []
# Every rendering the render rules make: (name, whole piece?).
RENDER_SETS = [(variant, False) for variant in VARIANTS] + [(rendering, True) for rendering in ID_RENDERINGS]


def soundfont_for(variant, whole=False):
    try:
        return str(resolve_soundfont(soundfont_setting(config, variant, whole)))
    except SynthError as error:
        where = "identification.renderings" if whole else "variant"
        raise WorkflowError(f"{where} '{variant}': {error}") from None


def batched(items, size):
    return [items[start : start + size] for start in range(0, len(items), size)]


def job_resources(stage, **declared):
    """A rule's resources: its own, then the config's stage_resources for its stage, then
    those for GPU jobs when it asks for one. Render and embed rules are generated per batch,
    so this is how a user sets a partition or GPU model for "the embed jobs" (docs/cluster.md)."""
    chosen = config["stage_resources"]
    resources = {**declared, **chosen.get(stage, {})}
    if declared.get("gpu"):
        resources.update(chosen.get("gpu_jobs", {}))
    # --config reads every value as a string; Snakemake wants mem_mb and runtime as numbers.
    return {name: int(value) if str(value).isdigit() else value for name, value in resources.items()}


def pieces_per_embed_job(embedder):
    """GPU embedders take far more pieces per job: their fixed cost (imports, CUDA start-up,
    model load: about 13 s) would otherwise dwarf the seconds of GPU work a batch needs."""
    if needs_gpu(embedder):
        return config["embed"]["pieces_per_gpu_job"]
    return config["embed"]["pieces_per_job"]


def embed_runtime_minutes(embedder, batch):
    """A cluster time limit for an embed job, from the embedder's declared (fixed, per piece) minutes."""
    return embedder_declaration(embedder).runtime_limit(len(batch))


RENDER_BATCHES = batched(PIECES, config["render"]["pieces_per_job"])
EMBED_BATCHES = {embedder: batched(PIECES, pieces_per_embed_job(embedder)) for embedder in EMBEDDERS}
RENDER_BATCH_OF = {piece: index for index, batch in enumerate(RENDER_BATCHES) for piece in batch}


def render_batches_covering(pieces):
    return sorted({RENDER_BATCH_OF[piece] for piece in pieces})


# ---- paths ---------------------------------------------------------------------------
def sources_table():
    return "results/corpus/sources.tsv"


def audio_folder(variant, whole=False):
    return f"results/identification/audio/{variant}" if whole else f"results/audio/{variant}"


def audio_path(variant, piece, whole=False):
    return f"{audio_folder(variant, whole)}/{piece}.flac"


def manifest_path(variant, piece, whole=False):
    return f"{audio_folder(variant, whole)}/{piece}.snippets.parquet"


def shard_path(embedder, variant, piece):
    return f"results/embeddings/{embedder}/{variant}/{piece}.parquet"


# What each batch job wrote (workflow_scripts/plumbing/batch_index.py): what the steps after a
# batch depend on, instead of every piece's files.
def render_index_path(variant, batch_index, whole=False):
    return f"{audio_folder(variant, whole)}/batches/batch{batch_index:03d}.json"


def embed_index_path(embedder, variant, batch_index):
    return f"results/embeddings/{embedder}/{variant}/batches/batch{batch_index:03d}.json"


def render_indexes(variant):
    return [render_index_path(variant, index) for index in range(len(RENDER_BATCHES))]


def embed_indexes(embedder, variant):
    return [embed_index_path(embedder, variant, index) for index in range(len(EMBED_BATCHES[embedder]))]


def model_marker(embedder):
    return f"results/models/{embedder}.json"


def catalog_path(variant):
    return f"results/corpus/{variant}/catalog.tsv"


def snippets_path(variant):
    return f"results/corpus/{variant}/snippets.parquet"


def audit_file(name):
    return f"results/corpus/audit/{name}"


def dataset_path(embedder, variant):
    return f"results/datasets/{embedder}/{variant}/embeddings.parquet"


def split_path(variant, split):
    return f"results/splits/{variant}/{split}.parquet"


def probe_folder(embedder, variant, split, probe):
    return f"results/probes/{embedder}/{variant}/{split}/{probe}"


def probe_file(name, embedder="{embedder}", variant="{variant}", split="{split}", probe="{probe}"):
    return f"{probe_folder(embedder, variant, split, probe)}/{name}"


def probe_figure(name, caption, figure):
    return report(
        probe_file(name),
        caption=f"../report/{caption}",
        category="Probes",
        subcategory="{embedder} / {variant} / {split}",
        labels={"probe": "{probe}", "figure": figure},
    )


def classify_outputs(curve_figure):
    """A classify job's outputs; curve.tsv records every kind's fit, the figure only an iterative one's."""
    outputs = {
        "metrics": probe_file("metrics.json"),
        "per_class": probe_file("per_class.tsv"),
        "per_class_png": probe_figure("per_class.png", "per_class.rst", "per-class accuracy"),
        "predictions": probe_file("predictions.parquet"),
        "confusion": probe_file("confusion.tsv"),
        "confusion_png": probe_figure("confusion.png", "confusion.rst", "confusion matrix"),
        "curve": probe_file("curve.tsv"),
    }
    if curve_figure:
        outputs["curve_png"] = probe_figure("curve.png", "curve.rst", "training curve")
    return outputs


def summary_path():
    return "results/summary.tsv"


def retrieval_file(name, embedder="{embedder}", variant="{variant}", split="{split}"):
    return f"results/retrieval/{embedder}/{variant}/{split}/{name}"


def geometry_file(name, embedder="{embedder}", variant="{variant}"):
    return f"results/geometry/{embedder}/{variant}/{name}"


def report_path():
    return "results/report/index.html"


# Before any probe trains, the preconditions rule (rules/classify.smk) checks once per
# variant or transfer that its splits leave something to learn from and to test on
# (workflow_scripts/probes/preconditions.py). classify, retrieval and geometry read its record
# and write a "not run" result with the reason when theirs fail, so a corpus too small to
# split still ends in its report.
def preconditions_path(variant):
    return f"results/splits/{variant}/preconditions.json"


def get_precondition_splits(wildcards):
    """The splits checked for a variant: all of them; for a transfer, its by_snippet split."""
    return ["by_snippet"] if wildcards.variant in TRANSFERS else SPLITS


def get_precondition_assignments(wildcards):
    return [split_path(wildcards.variant, split) for split in get_precondition_splits(wildcards)]


def get_precondition_catalogs(wildcards):
    if wildcards.variant in TRANSFERS:
        return [catalog_path(variant) for variant in transfer_variants(wildcards.variant)]
    return [catalog_path(wildcards.variant)]


def get_precondition_geometry(wildcards):
    """Geometry runs per rendering variant, not per transfer."""
    return wildcards.variant not in TRANSFERS


# What each probe's kind (workflow_scripts/probes/kinds/) says about it: whether it chooses a
# setting on validation (the preconditions check that the split has validation snippets) and
# whether it trains iteratively (only those probes have a training-curve figure).
try:
    VALIDATION_PROBES = [name for name, probe in config["probes"].items() if selects_on_validation(probe)]
    ITERATIVE_PROBES = [name for name, probe in config["probes"].items() if is_iterative(probe)]
except ValueError as error:
    raise WorkflowError(f"config 'probes': {error}") from None
ONE_SHOT_PROBES = [name for name in PROBES if name not in ITERATIVE_PROBES]


def classify_code_digest():
    """The classify stage's digest with the probe kinds' and poolings' modules, which it imports by name."""
    from workflow_scripts.embedders.registry import stage_modules
    from workflow_scripts.plumbing.code_graph import sources_digest

    return sources_digest(stage_modules("classify") | kinds_code_modules() | pooling_code_modules())


def retrieval_code_digest():
    """The retrieval stage's digest with the poolings' modules, which it imports by name."""
    from workflow_scripts.embedders.registry import stage_modules
    from workflow_scripts.plumbing.code_graph import sources_digest

    return sources_digest(stage_modules("retrieval") | pooling_code_modules())


def warn_what_did_not_run():
    """At the end of a run, each variant's preconditions message: a corpus too small to
    split finishes with its report and says, last, what did not run and why."""
    from snakemake.logging import logger

    from workflow_scripts.probes.preconditions import run_end_messages

    records = [preconditions_path(variant) for variant in [*VARIANTS, *TRANSFERS]]
    metric_head = config["retrieval"]["metric_head"]["enabled"]
    for message in run_end_messages(records, report_path(), VALIDATION_PROBES, metric_head):
        logger.warning(message)


def retrieval_targets():
    return [
        retrieval_file("metrics.json", embedder, variant, split)
        for embedder in EMBEDDERS
        for variant in VARIANTS
        for split in OPEN_SET_SPLITS
    ]


def geometry_targets():
    return [geometry_file("summary.json", embedder, variant) for embedder in EMBEDDERS for variant in VARIANTS]


def log_path(stage, name):
    return f"results/logs/{stage}/{name}.log"


def benchmark_path(stage, name):
    return f"results/benchmarks/{stage}/{name}.tsv"


def probe_metrics_targets():
    within = [
        probe_file("metrics.json", embedder, variant, split, probe)
        for embedder in EMBEDDERS
        for variant in VARIANTS
        for split in CLOSED_SET_SPLITS
        for probe in PROBES
    ]
    across = [
        probe_file("metrics.json", embedder, transfer, "by_snippet", probe)
        for embedder in EMBEDDERS
        for transfer in TRANSFERS
        for probe in PROBES
    ]
    return within + across


def transfer_variants(transfer):
    """The variants a transfer reads, training ones first, the test one last."""
    return TRANSFERS[transfer]["train"] + [TRANSFERS[transfer]["test"]]


def alternatives(names):
    return "|".join(re.escape(name) for name in names) or "(?!)"


# Rules that make a variant's own data match real variants only; probes also take a
# transfer's name in the variant position (rules/transfer.smk builds its dataset).
VARIANT_PATTERN = alternatives(VARIANTS)
TRANSFER_PATTERN = alternatives(TRANSFERS)


def default_targets():
    targets = [sources_table(), summary_path(), report_path(), *identification_targets()]
    targets += [catalog_path(variant) for variant in VARIANTS]
    targets += [split_path(variant, split) for variant in VARIANTS for split in SPLITS]
    return targets


wildcard_constraints:
    variant=alternatives([*VARIANTS, *TRANSFERS]),
    embedder="|".join(EMBEDDERS),
    split="|".join(SPLITS),
    probe="|".join(re.escape(probe) for probe in PROBES),


# ---- input functions (named, so `snakemake --list-rules` readers and tracebacks see what they do)
def get_render_indexes(wildcards):
    return render_indexes(wildcards.variant)


def get_embed_indexes(wildcards):
    return embed_indexes(wildcards.embedder, wildcards.variant)


def get_probe_settings(wildcards):
    return config["probes"][wildcards.probe]


def get_transfer(wildcards):
    return TRANSFERS[wildcards.transfer]


def get_transfer_variants(wildcards):
    return transfer_variants(wildcards.transfer)


def get_transfer_test_assignment(wildcards):
    """A transfer is scored on its test variant's by_snippet test snippets."""
    return split_path(TRANSFERS[wildcards.transfer]["test"], "by_snippet")


def get_transfer_snippets(wildcards):
    return [snippets_path(variant) for variant in transfer_variants(wildcards.transfer)]


def get_transfer_datasets(wildcards):
    return [dataset_path(wildcards.embedder, variant) for variant in transfer_variants(wildcards.transfer)]


# ---- identification paths and embed sets ----------------------------------------------
def query_manifest_path(rendering, piece):
    return f"results/identification/queries/{rendering}/{piece}.snippets.parquet"


def query_index_path(rendering, batch_index):
    return f"results/identification/queries/{rendering}/batches/batch{batch_index:03d}.json"


def identification_file(name, embedder="{embedder}"):
    return f"results/identification/{embedder}/{name}"


def identification_targets():
    return [identification_file("metrics.json", embedder) for embedder in EMBEDDERS] if ID_RENDERINGS else []


def variant_embed_set(variant):
    """A variant's snippets, embedded for the probes."""
    return {
        "name": variant,
        "manifest": lambda piece: manifest_path(variant, piece),
        "audio": lambda piece: audio_path(variant, piece),
        "inputs": lambda batch: [render_index_path(variant, index) for index in render_batches_covering(batch)],
        "shard": lambda embedder, piece: shard_path(embedder, variant, piece),
        "index": lambda embedder, batch_index: embed_index_path(embedder, variant, batch_index),
        "summary_hz": config["embed"]["summary_hz"],
    }


def identification_embed_set(rendering, queries):
    """The reference's whole pieces (``queries`` false) or a rendering's query excerpts, embedded
    with time summaries at identification.frame_hz."""
    name = f"queries_{rendering}" if queries else f"whole_{rendering}"

    def inputs(batch):
        covering = render_batches_covering(batch)
        return [
            query_index_path(rendering, index) if queries else render_index_path(rendering, index, True)
            for index in covering
        ]

    return {
        "name": name,
        "manifest": (
            (lambda piece: query_manifest_path(rendering, piece))
            if queries
            else (lambda piece: manifest_path(rendering, piece, True))
        ),
        "audio": lambda piece: audio_path(rendering, piece, True),
        "inputs": inputs,
        "shard": lambda embedder, piece: f"results/identification/embeddings/{embedder}/{name}/{piece}.parquet",
        "index": lambda embedder, batch_index: (
            f"results/identification/embeddings/{embedder}/{name}/batches/batch{batch_index:03d}.json"
        ),
        "summary_hz": IDENTIFICATION["frame_hz"],
    }


# Every set of recordings the embed rules embed (rules/embed.smk).
EMBED_SETS = [variant_embed_set(variant) for variant in VARIANTS]
if ID_RENDERINGS:
    EMBED_SETS.append(identification_embed_set(IDENTIFICATION["reference"], queries=False))
    EMBED_SETS += [identification_embed_set(rendering, queries=True) for rendering in ID_RENDERINGS]
EMBED_SET_NAMED = {embed_set["name"]: embed_set for embed_set in EMBED_SETS}


def identification_embed_indexes(embedder, name):
    embed_set = EMBED_SET_NAMED[name]
    return [embed_set["index"](embedder, index) for index in range(len(EMBED_BATCHES[embedder]))]


def get_identification_reference(wildcards):
    return identification_embed_indexes(wildcards.embedder, f"whole_{IDENTIFICATION['reference']}")


def get_identification_reference_renders(wildcards):
    return [render_index_path(IDENTIFICATION["reference"], index, True) for index in range(len(RENDER_BATCHES))]


def get_identification_queries(wildcards):
    return [
        index
        for rendering in ID_RENDERINGS
        for index in identification_embed_indexes(wildcards.embedder, f"queries_{rendering}")
    ]


def get_identification_split(wildcards):
    """The by_piece split whose training pieces a learned matcher may see (the first variant's:
    by_piece assigns whole pieces), or nothing when no learned matcher runs or there is no by_piece."""
    learned = set(IDENTIFICATION["matchers"]) & LEARNED_MATCHERS
    return [split_path(VARIANTS[0], "by_piece")] if learned and "by_piece" in SPLITS else []


def identification_query_indexes():
    return [[query_index_path(rendering, index) for index in range(len(RENDER_BATCHES))] for rendering in ID_RENDERINGS]
