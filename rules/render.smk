# One rule per batch of pieces: a job renders many pieces in one process while every
# piece keeps its own output files (per-piece targets, per-piece incremental reruns
# through the piece cache). A wildcard rule cannot declare a batch's list of per-piece
# outputs, hence the loop (docs/design.md); set resources for all batches at once with the
# config's stage_resources.render, not --set-resources (docs/cluster.md).

# Identification renderings (whole=True) record each piece whole, with the same code and cache.
for variant, whole in RENDER_SETS:
    for batch_index, batch in enumerate(RENDER_BATCHES):

        rule:
            name:
                f"render_{'whole_' if whole else ''}{variant}_batch{batch_index:03d}"
            input:
                # A tune book's tunes share one file: each listed once here, per piece in params.
                sources=sorted({SOURCE_OF[piece] for piece in batch}),
            output:
                # The index first: Snakemake matches a requested file against a rule's
                # outputs in order, and the index is what the next steps request.
                index=render_index_path(variant, batch_index, whole),
                audio=[audio_path(variant, piece, whole) for piece in batch],
                manifests=[manifest_path(variant, piece, whole) for piece in batch],
            log:
                log_path("render", f"{'whole_' if whole else ''}{variant}/batch{batch_index:03d}"),
            benchmark:
                benchmark_path("render", f"{'whole_' if whole else ''}{variant}/batch{batch_index:03d}")
            group:
                "render"
            conda:
                "../envs/render.yaml"
            threads: 1
            resources:
                **job_resources("render", mem_mb=2000, runtime=10 + 2 * len(batch)),
            params:
                stage="render",
                code=stage_code_digest("render"),
                pieces=batch,
                sources=[SOURCE_OF[piece] for piece in batch],
                tunes=[TUNE_OF[piece] for piece in batch],
                settings=render_settings(config, variant, whole),
                soundfont=soundfont_for(variant, whole),
                cache=CACHE,
            script:
                "../workflow_scripts/run_stage.py"
