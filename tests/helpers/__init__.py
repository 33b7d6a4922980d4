"""Helpers shared by tests (and benchmarks/bad_inputs.py): tiny models, Snakemake runs, faults,
damaged artifacts."""
