"""The test suite, laid out like the package: ``unit/`` holds the tests of one module each
(``unit/test_<module>.py``, ``unit/demo/`` for ``neuron_ablation.demo``), ``workflow/`` every
test that runs Snakemake (marked ``workflow`` by ``conftest.py``), ``helpers/`` what tests share.
"""
