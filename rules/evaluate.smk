rule retrieval:
    """Held-out pieces: each held-out snippet retrieves the others of its piece (MAP, MR1, MRR, HR@k)."""
    input:
        dataset=dataset_path("{embedder}", "{variant}"),
        assignment=split_path("{variant}", "{split}"),
        groups=audit_file("groups.tsv"),
        preconditions=ancient(preconditions_path("{variant}")),
    output:
        metrics=retrieval_file("metrics.json"),
        per_query=retrieval_file("per_query.parquet"),
        head_curve=retrieval_file("metric_head_curve.tsv"),
        distances_png=report(
            retrieval_file("distances.png"),
            caption="../report/retrieval_distances.rst",
            category="Retrieval on held-out pieces",
            subcategory="{embedder} / {variant} / {split}",
            labels={"embedder": "{embedder}", "variant": "{variant}", "figure": "distances per representation"},
        ),
    log:
        log_path("retrieval", "{embedder}/{variant}/{split}"),
    benchmark:
        benchmark_path("retrieval", "{embedder}/{variant}/{split}")
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    conda:
        "../envs/classify.yaml"
    threads: 2
    resources:
        **job_resources("retrieval", mem_mb=4000, runtime=20),
    params:
        stage="retrieval",
        code=retrieval_code_digest(),
        settings=config["retrieval"],
    script:
        "../workflow_scripts/run_stage.py"


rule geometry:
    """Same-piece versus different-piece distances, AUC and nearest-neighbour accuracy per layer."""
    input:
        dataset=dataset_path("{embedder}", "{variant}"),
        preconditions=ancient(preconditions_path("{variant}")),
    output:
        summary=geometry_file("summary.json"),
        per_layer=geometry_file("per_layer.tsv"),
        distances_png=report(
            geometry_file("distances.png"),
            caption="../report/distances.rst",
            category="Embedding geometry",
            subcategory="{embedder} / {variant}",
            labels={"embedder": "{embedder}", "variant": "{variant}", "figure": "distance distributions"},
        ),
        layers_png=report(
            geometry_file("layers.png"),
            caption="../report/layers.rst",
            category="Embedding geometry",
            subcategory="{embedder} / {variant}",
            labels={"embedder": "{embedder}", "variant": "{variant}", "figure": "AUC per layer"},
        ),
        tsne_png=report(
            geometry_file("tsne.png"),
            caption="../report/tsne.rst",
            category="Embedding geometry",
            subcategory="{embedder} / {variant}",
            labels={"embedder": "{embedder}", "variant": "{variant}", "figure": "t-SNE map"},
        ),
    log:
        log_path("geometry", "{embedder}/{variant}"),
    benchmark:
        benchmark_path("geometry", "{embedder}/{variant}")
    wildcard_constraints:
        variant=VARIANT_PATTERN,
    conda:
        "../envs/classify.yaml"
    threads: 2
    resources:
        **job_resources("geometry", mem_mb=8000, runtime=30),
    params:
        stage="geometry",
        code=stage_code_digest("geometry"),
        settings=config["geometry"],
    script:
        "../workflow_scripts/run_stage.py"
