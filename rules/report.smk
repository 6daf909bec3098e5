rule report:
    """One standalone HTML page: comparison table, figures, retrieval, geometry, audit."""
    input:
        summary=summary_path(),
        metrics=probe_metrics_targets(),
        retrieval=retrieval_targets(),
        geometry=geometry_targets(),
        audit=audit_file("summary.json"),
        groups=audit_file("groups.tsv"),
        catalogs=[catalog_path(variant) for variant in VARIANTS],
        preconditions=[preconditions_path(variant) for variant in [*VARIANTS, *TRANSFERS]],
        identification=identification_targets(),
    output:
        report=report(
            report_path(), caption="../report/page.rst", category="Comparison", labels={"page": "standalone report"}
        ),
        comparison_png=report(
            "results/report/comparison.png",
            caption="../report/comparison.rst",
            category="Comparison",
            labels={"figure": "top-1 and top-5 per setting"},
        ),
    log:
        log_path("report", "report"),
    benchmark:
        benchmark_path("report", "report")
    localrule: True
    conda:
        "../envs/classify.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        stage="report",
        code=stage_code_digest("report"),
        # What the preconditions message says depends on the uses this run makes of the data.
        validation_probes=VALIDATION_PROBES,
        metric_head=config["retrieval"]["metric_head"]["enabled"],
    script:
        "../workflow_scripts/run_stage.py"


onsuccess:
    warn_what_did_not_run()
