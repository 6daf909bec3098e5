"""Entry points for Snakemake's ``script:`` directive, one per stage.

Each only hands the ``snakemake`` object to the stage's ``main``; Snakemake prepends
its own preamble to these files, so they hold no logic.
"""
