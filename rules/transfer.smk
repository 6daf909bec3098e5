# Across rendering variants (workflow_scripts/stages/transfer_split.py): a transfer's dataset and
# assignment sit where a variant's would, under the transfer's name, so the classify rule
# trains and scores it like any variant.


rule transfer_split:
    """The test variant's by_snippet assignment applied to every variant of a transfer."""
    input:
        assignment=get_transfer_test_assignment,
        snippets=get_transfer_snippets,
    output:
        assignment=split_path("{transfer}", "by_snippet"),
    log:
        log_path("transfer_split", "{transfer}"),
    benchmark:
        benchmark_path("transfer_split", "{transfer}")
    wildcard_constraints:
        transfer=TRANSFER_PATTERN,
    localrule: True
    conda:
        "../envs/corpus.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        stage="transfer_split",
        code=stage_code_digest("transfer_split"),
        transfer=get_transfer,
        variants=get_transfer_variants,
    script:
        "../workflow_scripts/run_stage.py"


rule transfer_dataset:
    """Training rows from the training variants, test rows from the test variant."""
    input:
        datasets=get_transfer_datasets,
        assignment=split_path("{transfer}", "by_snippet"),
    output:
        dataset=dataset_path("{embedder}", "{transfer}"),
    log:
        log_path("transfer_dataset", "{embedder}/{transfer}"),
    benchmark:
        benchmark_path("transfer_dataset", "{embedder}/{transfer}")
    wildcard_constraints:
        transfer=TRANSFER_PATTERN,
    localrule: True
    conda:
        "../envs/embed.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        stage="transfer_dataset",
        code=stage_code_digest("transfer_dataset"),
        transfer=get_transfer,
        variants=get_transfer_variants,
    script:
        "../workflow_scripts/run_stage.py"
