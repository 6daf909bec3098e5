# Across rendering variants (workflow_scripts/transfer.py): a transfer's dataset and
# assignment sit where a variant's would, under the transfer's name, so the classify rule
# trains and scores it like any variant.


rule transfer_split:
    """The test variant's by_snippet assignment applied to every variant of a transfer."""
    input:
        assignment=lambda wildcards: split_path(TRANSFERS[wildcards.transfer]["test"], "by_snippet"),
        snippets=lambda wildcards: [snippets_path(variant) for variant in transfer_variants(wildcards.transfer)],
    output:
        assignment=split_path("{transfer}", "by_snippet"),
    params:
        code=code_digest("transfer_split"),
        transfer=lambda wildcards: TRANSFERS[wildcards.transfer],
        variants=lambda wildcards: transfer_variants(wildcards.transfer),
    wildcard_constraints:
        transfer=TRANSFER_PATTERN,
    log:
        log_path("transfer_split", "{transfer}"),
    benchmark:
        benchmark_path("transfer_split", "{transfer}")
    localrule: True
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow_scripts/edges/transfer_split.py"


rule transfer_dataset:
    """Training rows from the training variants, test rows from the test variant."""
    input:
        datasets=lambda wildcards: [dataset_path(wildcards.embedder, variant) for variant in transfer_variants(wildcards.transfer)],
        assignment=split_path("{transfer}", "by_snippet"),
    output:
        dataset=dataset_path("{embedder}", "{transfer}"),
    params:
        code=code_digest("transfer_dataset"),
        transfer=lambda wildcards: TRANSFERS[wildcards.transfer],
        variants=lambda wildcards: transfer_variants(wildcards.transfer),
    wildcard_constraints:
        transfer=TRANSFER_PATTERN,
    log:
        log_path("transfer_dataset", "{embedder}/{transfer}"),
    benchmark:
        benchmark_path("transfer_dataset", "{embedder}/{transfer}")
    localrule: True
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/embed.yaml"
    script:
        "../workflow_scripts/edges/transfer_dataset.py"
