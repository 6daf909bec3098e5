rule corpus_sources:
    """The piece ids and score files the run uses (the same list the DAG was built from)."""
    output:
        sources=sources_table(),
    params:
        corpus=config["corpus"],
    log:
        log_path("corpus", "sources"),
    benchmark:
        benchmark_path("corpus", "sources")
    localrule: True
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow_scripts/edges/corpus.py"
