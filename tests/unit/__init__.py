"""Tests of one module each, named after the module (``test_<module>.py``); no Snakemake runs."""
