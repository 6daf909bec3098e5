rule corpus_sources:
    """The piece ids and score files the run uses (the same list the DAG was built from)."""
    output:
        sources=sources_table(),
    log:
        log_path("corpus", "sources"),
    benchmark:
        benchmark_path("corpus", "sources")
    localrule: True
    conda:
        "../envs/corpus.yaml"
    resources:
        mem_mb=500,
        runtime=5,
    params:
        stage="corpus",
        code=stage_code_digest("corpus"),
        corpus=config["corpus"],
    script:
        "../workflow_scripts/run_stage.py"


rule audit:
    """Groups of pieces that are the same music or share a tune (from the first variant's scores)."""
    input:
        renders=render_indexes(VARIANTS[0]),
    output:
        groups=audit_file("groups.tsv"),
        pairs=audit_file("pairs.tsv"),
        summary=audit_file("summary.json"),
    log:
        log_path("audit", "audit"),
    benchmark:
        benchmark_path("audit", "audit")
    localrule: True
    conda:
        "../envs/corpus.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        stage="audit",
        code=stage_code_digest("audit"),
        settings=config["audit"],
    script:
        "../workflow_scripts/run_stage.py"
