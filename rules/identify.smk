# Identification of known music (workflow_scripts/identification): excerpts cut from each
# whole-piece rendering (rules/render.smk renders them, rules/embed.smk embeds them) are
# matched against the reference rendering's whole pieces, per embedder. Off unless
# identification.enabled (configs/identification.yaml).

# One queries job per render batch and rendering: cheap (no audio is decoded), per-piece outputs.
for rendering in ID_RENDERINGS:
    for batch_index, batch in enumerate(RENDER_BATCHES):

        rule:
            name:
                f"queries_{rendering}_batch{batch_index:03d}"
            input:
                renders=render_index_path(rendering, batch_index, True),
            output:
                index=query_index_path(rendering, batch_index),  # first: see render.smk
                manifests=[query_manifest_path(rendering, piece) for piece in batch],
            log:
                log_path("queries", f"{rendering}/batch{batch_index:03d}"),
            benchmark:
                benchmark_path("queries", f"{rendering}/batch{batch_index:03d}")
            localrule: True
            conda:
                "../envs/render.yaml"
            resources:
                mem_mb=1000,
                runtime=5,
            params:
                stage="queries",
                code=stage_code_digest("queries"),
                rendering=rendering,
                pieces=batch,
                whole_manifests=[manifest_path(rendering, piece, True) for piece in batch],
                audio=[audio_path(rendering, piece, True) for piece in batch],
                settings={
                    "query_seconds": IDENTIFICATION["query_seconds"],
                    "queries_per_piece": IDENTIFICATION["queries_per_piece"],
                    "seed": IDENTIFICATION["seed"],
                    "sample_rate": config["render"]["sample_rate"],
                },
            script:
                "../workflow_scripts/run_stage.py"


rule identify:
    """Every rendering's queries matched against the reference, by every matcher the embedder takes."""
    input:
        reference=get_identification_reference,
        reference_renders=get_identification_reference_renders,
        queries=get_identification_queries,
        groups=audit_file("groups.tsv"),
        split=get_identification_split,
    output:
        metrics=identification_file("metrics.json"),
        table=identification_file("metrics.tsv"),
        per_query=identification_file("per_query.parquet"),
    log:
        log_path("identify", "{embedder}"),
    benchmark:
        benchmark_path("identify", "{embedder}")
    # The embed env: the stage reads each embedder's declaration (its pitch-class view).
    conda:
        "../envs/embed.yaml"
    threads: 1
    resources:
        **job_resources("identify", mem_mb=8000, runtime=60),
    params:
        stage="identify",
        code=stage_code_digest("identify"),
        embedder=lambda wildcards: wildcards.embedder,
        renderings=ID_RENDERINGS,
        query_embed_indexes=lambda wildcards: [
            identification_embed_indexes(wildcards.embedder, f"queries_{rendering}") for rendering in ID_RENDERINGS
        ],
        query_indexes=identification_query_indexes(),
        settings=IDENTIFICATION,
    script:
        "../workflow_scripts/run_stage.py"
