# preconditions runs before any probe: it checks once per variant or transfer that the splits
# leave something to learn from (workflow_scripts/probes/preconditions.py); classify, retrieval
# and geometry write a "not run" result with its reason instead of failing.
rule preconditions:
    """Check once what the probes, retrieval and geometry of a variant need; name what fails."""
    input:
        assignments=get_precondition_assignments,
        catalogs=get_precondition_catalogs,
    output:
        preconditions=preconditions_path("{variant}"),
    log:
        log_path("preconditions", "{variant}"),
    benchmark:
        benchmark_path("preconditions", "{variant}")
    localrule: True
    conda:
        "../envs/corpus.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        stage="preconditions",
        code=stage_code_digest("preconditions"),
        splits=get_precondition_splits,
        geometry=get_precondition_geometry,
    script:
        "../workflow_scripts/run_stage.py"


rule classify:
    """Train one probe on the train snippets of a split and score it on the test snippets."""
    input:
        dataset=dataset_path("{embedder}", "{variant}"),
        assignment=split_path("{variant}", "{split}"),
        groups=audit_file("groups.tsv"),
        # ancient(): the record changes only with the assignments and catalogs, which are this
        # job's inputs already; a rewritten record alone must not retrain every probe (the same
        # in rules/evaluate.smk).
        preconditions=ancient(preconditions_path("{variant}")),
    output:
        **classify_outputs(curve_figure=False),
    log:
        log_path("classify", "{embedder}/{variant}/{split}/{probe}"),
    benchmark:
        benchmark_path("classify", "{embedder}/{variant}/{split}/{probe}")
    wildcard_constraints:
        probe=alternatives(ONE_SHOT_PROBES),
    conda:
        "../envs/classify.yaml"
    threads: 2
    resources:
        **job_resources("classify", mem_mb=4000, runtime=30),
    params:
        stage="classify",
        code=classify_code_digest(),
        probe=get_probe_settings,
    script:
        "../workflow_scripts/run_stage.py"


# Iterative kinds (Adam's epochs) also draw their training curve; the rest record one point.
use rule classify as classify_iterative with:
    output:
        **classify_outputs(curve_figure=True),
    wildcard_constraints:
        probe=alternatives(ITERATIVE_PROBES),


rule summary:
    """One row per embedder, variant, split and probe (and identification matcher): the figures to compare."""
    input:
        metrics=probe_metrics_targets(),
        identification=identification_targets(),
    output:
        summary=report(
            summary_path(), caption="../report/summary.rst", category="Comparison", labels={"table": "all probes"}
        ),
    log:
        log_path("summary", "summary"),
    benchmark:
        benchmark_path("summary", "summary")
    localrule: True
    conda:
        "../envs/corpus.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    params:
        stage="summary",
        code=stage_code_digest("summary"),
    script:
        "../workflow_scripts/run_stage.py"
