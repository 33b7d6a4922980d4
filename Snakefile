"""Ablation of attention pre-out neurons (Pochinkov et al.): see README.md.

snakemake --cores all                  # the whole study in config.yaml
snakemake --cores all <model>          # one model's branch (tokens -> ... -> its figure)
snakemake --cores all --configfile=config/paper.yaml
"""

from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default; a --configfile replaces it rather than merging into it, so the
# paper's config does not inherit the demo model.
if not config:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/assets.smk"
include: "workflow/rules/tokens.smk"
include: "workflow/rules/statistics.smk"
include: "workflow/rules/resampling.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/optimal.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


# After the job graph is built, when the executor is known, before any job is submitted.
# One onstart handler (Snakemake keeps only the last one defined).
onstart:
    check_cluster_threads()
    run_preflight()


rule all:
    default_target: True
    input:
        all_outputs(),
