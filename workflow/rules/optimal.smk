# Optimal ablation: constants learned on the statistics split per (model, seed), then scored like
# every other constant method at the fractions of `optimal.fractions`.


rule optimal:
    input:
        model=get_model_digest,
        tokens=paths.tokens("{model}", "stats"),
        stats=paths.stats("{model}"),
        selection=paths.selection("{model}", "{seed}"),
    output:
        directory(paths.optimal("{model}", "{seed}")),
    log:
        paths.log("optimal", "{model}_seed{seed}"),
    benchmark:
        paths.benchmark("optimal", "{model}_seed{seed}")
    conda:
        ENV
    threads: 1
    resources:
        **model_resources(),
    params:
        **model_params(runtime=False),
        device=model_setting("device"),
        dtype=model_setting("dtype"),
        fractions=[f for f in OPTIMAL_FRACTIONS if float(f) > 0],
        settings=get_optimal_args,
    shell:
        "neuron-ablation optimal --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} --stats {input.stats:q} --selection {input.selection:q}"
        " --device {params.device:q} --dtype {params.dtype:q} --threads {threads:q}"
        " --seed {wildcards.seed:q} --fraction {params.fractions:q} {params.settings:q}"
        " --model-name {wildcards.model:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"


# Scored by the evaluation job (get_job_fractions: the fractions of optimal.fractions;
# get_evaluate_inputs: the constants of the seed's optimal job).
use rule evaluate as evaluate_optimal with:
    output:
        [
            paths.eval_result("{model}", "{method}", "{seed}", fraction)
            for fraction in OPTIMAL_FRACTIONS
        ],
    wildcard_constraints:
        method="optimal",
        seed=r"\d+",  # optimal.seeds, which may go beyond `seeds`
