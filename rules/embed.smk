# One fetch rule per embedder with weights (the transformers encoders): it downloads the entry's
# files into the cache on the submit host, before any GPU job, and checks the known checksums.
for embedder in [name for name in EMBEDDERS if needs_weights(name)]:

    rule:
        name:
            f"fetch_model_{embedder}"
        output:
            marker=model_marker(embedder),
        log:
            log_path("fetch_model", embedder),
        benchmark:
            benchmark_path("fetch_model", embedder)
        localrule: True
        conda:
            "../envs/embed.yaml"
        resources:
            mem_mb=1000,
            runtime=30,
        params:
            stage="fetch_model",
            code=stage_code_digest("fetch_model"),
            settings=embedder_settings(config, embedder),
            name=embedder,
        script:
            "../workflow_scripts/run_stage.py"


# One rule per batch of pieces and embedder: one model load per job, per-piece shards
# (generated, like the render batches: docs/design.md). Model embedders ask for a GPU
# (gpu=1), so `--resources gpu=1` runs them one at a time and a cluster gives each job one
# GPU; stage_resources.embed and .gpu_jobs in the config set their partition or GPU model.

# EMBED_SETS (rules/common.smk): each variant's snippets and, with identification, the
# reference's whole pieces and every rendering's queries.
for embedder in EMBEDDERS:
    for embed_set in EMBED_SETS:
        for batch_index, batch in enumerate(EMBED_BATCHES[embedder]):

            rule:
                name:
                    f"embed_{embedder}_{embed_set['name']}_batch{batch_index:03d}"
                input:
                    renders=embed_set["inputs"](batch),
                    model=[model_marker(embedder)] if needs_weights(embedder) else [],
                output:
                    index=embed_set["index"](embedder, batch_index),  # first: see render.smk
                    shards=[embed_set["shard"](embedder, piece) for piece in batch],
                log:
                    log_path("embed", f"{embedder}/{embed_set['name']}/batch{batch_index:03d}"),
                benchmark:
                    benchmark_path("embed", f"{embedder}/{embed_set['name']}/batch{batch_index:03d}")
                group:
                    f"embed_{embedder}"
                conda:
                    "../envs/embed.yaml"
                # A GPU job decodes audio on all but one of its threads while the model runs; a CPU
                # embedder with its own thread setting (basic_pitch's onnxruntime) declares that many.
                threads: 8 if needs_gpu(embedder) else embedder_settings(config, embedder).get("threads", 1)
                resources:
                    **job_resources(
                        "embed",
                        gpu=1 if needs_gpu(embedder) else 0,
                        mem_mb=8000 if needs_gpu(embedder) else 2000,
                        runtime=embed_runtime_minutes(embedder, batch),
                    ),
                params:
                    stage="embed",
                    code=stage_code_digest("embed", embedder),
                    pieces=batch,
                    manifests=[embed_set["manifest"](piece) for piece in batch],
                    audio=[embed_set["audio"](piece) for piece in batch],
                    embedder=embedder,
                    settings=embedder_settings(config, embedder),
                    summary_hz=embed_set["summary_hz"],
                    cache=CACHE,
                script:
                    "../workflow_scripts/run_stage.py"
