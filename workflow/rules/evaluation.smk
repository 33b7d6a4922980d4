# Stage 3: nested random neuron selection per seed; stage 4: one result per
# (model, method, seed, fraction), written by one job per (model, method, seed) that loads the
# model once and scores every fraction (focus-only seeds: one job per block of seeds).


rule select_neurons:
    input:
        model=get_model_digest,
    output:
        directory(paths.selection("{model}", "{seed}")),
    log:
        paths.log("select_neurons", "{model}_seed{seed}"),
    benchmark:
        paths.benchmark("select_neurons", "{model}_seed{seed}")
    conda:
        ENV
    params:
        **model_params(runtime=False),
    shell:
        "neuron-ablation select --model-source={params.model:q} --task {params.task:q}"
        " --seed {wildcards.seed:q} --model-digest {input.model:q} --out {output:q} > {log:q} 2>&1"


rule baseline:
    input:
        model=get_model_digest,
        tokens=paths.tokens("{model}", "eval"),
    output:
        paths.baseline("{model}"),
    log:
        paths.log("baseline", "{model}"),
    benchmark:
        paths.benchmark("baseline", "{model}")
    conda:
        ENV
    threads: 1
    resources:
        **model_resources(),
    params:
        **model_params(),
        sweep=get_sweep_rows_args,
    shell:
        "neuron-ablation baseline --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} {params.runtime:q} {params.sweep:q} --threads {threads:q}"
        " --model-name={wildcards.model:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(get_evaluate_inputs),
    output:
        [
            paths.eval_result("{model}", "{method}", "{seed}", fraction)
            for fraction in FRACTIONS
        ],
    log:
        paths.log("evaluate", "{model}/{method}_seed{seed}"),
    benchmark:
        paths.benchmark("evaluate", "{model}/{method}_seed{seed}")
    wildcard_constraints:
        method=_alternatives(
            m for m in config["methods"] if not method_spec(m).needs_training
        ),
        seed=_alternatives(str(s) for s in config["seeds"]),
    conda:
        ENV
    threads: 1
    resources:
        **model_resources(),
    params:
        **model_params(),
        fractions=get_job_fractions,
        optional=get_optional_input_args,
        sweep=get_sweep_args,
    shell:
        "neuron-ablation evaluate --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} {params.runtime:q} --threads {threads:q}"
        " --model-name={wildcards.model:q} --method {wildcards.method:q} --seed {wildcards.seed:q}"
        " --fraction {params.fractions:q} --selection {input.selection:q} {params.optional:q}"
        " {params.sweep:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"


# The seeds of eval.focus_seeds beyond `seeds`: the focus fractions only, one job per (model,
# method, block of eval.focus_seeds_per_job seeds) that loads the model once for the block. A
# rule per block, because a block's outputs name its seeds and no wildcard can list them.
for block in FOCUS_ONLY_BLOCKS:
    rule_name, label = focus_block_name(block)

    rule:
        name:
            rule_name
        input:
            unpack(get_focus_block_inputs(block)),
        output:
            [
                paths.eval_result("{model}", "{method}", seed, fraction)
                for seed in block
                for fraction in FOCUS_FRACTIONS
            ],  # seed-major, as evaluate --out takes them
        log:
            paths.log("evaluate_focus", label),
        benchmark:
            paths.benchmark("evaluate_focus", label)
        wildcard_constraints:
            method=_alternatives(focus_methods(config)),
        conda:
            ENV
        threads: 1
        resources:
            **model_resources(),
        params:
            **model_params(),
            seeds=block,
            fractions=FOCUS_FRACTIONS,
            optional=get_optional_input_args,
            sweep=get_sweep_args,
        shell:
            "neuron-ablation evaluate --model-source={params.model:q} --task {params.task:q}"
            " --tokens {input.tokens:q} {params.runtime:q} --threads {threads:q}"
            " --model-name={wildcards.model:q} --method {wildcards.method:q}"
            " --seed {params.seeds:q} --fraction {params.fractions:q}"
            " --selection {input.selection:q} {params.optional:q} {params.sweep:q}"
            " --model-digest {input.model:q} --out {output:q} > {log:q} 2>&1"

    take_focus_settings(rule_name)
