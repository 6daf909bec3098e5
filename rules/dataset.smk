rule catalog:
    """Gather every piece's render manifest: the piece table and all snippets."""
    input:
        renders=get_render_indexes,
    output:
        catalog=catalog_path("{variant}"),
        snippets=snippets_path("{variant}"),
    log:
        log_path("catalog", "{variant}"),
    benchmark:
        benchmark_path("catalog", "{variant}")
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    localrule: True
    conda:
        "../envs/corpus.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        stage="catalog",
        code=stage_code_digest("catalog"),
    script:
        "../workflow_scripts/run_stage.py"


rule dataset:
    """Validate and join every embedding shard of one embedder and variant."""
    input:
        embeddings=get_embed_indexes,
    output:
        dataset=dataset_path("{embedder}", "{variant}"),
    log:
        log_path("dataset", "{embedder}/{variant}"),
    benchmark:
        benchmark_path("dataset", "{embedder}/{variant}")
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    localrule: True
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        stage="dataset",
        code=stage_code_digest("dataset"),
    script:
        "../workflow_scripts/run_stage.py"


rule split:
    """Assign every snippet of a variant to train or test (the same for every embedder)."""
    input:
        snippets=snippets_path("{variant}"),
        groups=audit_file("groups.tsv"),
    output:
        assignment=split_path("{variant}", "{split}"),
    log:
        log_path("split", "{variant}/{split}"),
    benchmark:
        benchmark_path("split", "{variant}/{split}")
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    localrule: True
    conda:
        "../envs/corpus.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        stage="split",
        code=stage_code_digest("split"),
        settings={
            key: config["splits"][key] for key in ("test_fraction", "validation_fraction", "seed", "overlap_guard")
        },
    script:
        "../workflow_scripts/run_stage.py"
