"""One module per rule. Each has a ``main(snakemake)`` (the only code that touches the
``snakemake`` object: it reads the rule's files and params and writes its outputs) and the
stage's logic as plain, unit-tested functions. ``run_stage.py`` runs the ``main`` that a
rule names in ``params.stage``."""
