"""Tests that run Snakemake (a run, a dry run, or the finished session run ``pipeline_run``);
every test here carries the ``workflow`` marker (``python -m pytest -m "not workflow"`` skips)."""
