# Stage 3: nested random neuron selection per seed; stage 4: one result per
# (model, method, seed, fraction), written by one job per (model, method, seed) that loads the
# model once and scores every fraction.


rule select_neurons:
    input:
        model=model_inputs,
    output:
        directory(paths.selection("{model}", "{seed}")),
    log:
        paths.log("select_neurons", "{model}_seed{seed}"),
    benchmark:
        paths.benchmark("select_neurons", "{model}_seed{seed}")
    conda:
        ENV
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
    shell:
        "neuron-ablation select --model-source={params.model:q} --task {params.task:q}"
        " --seed {wildcards.seed:q} --model-digest {input.model:q} --out {output:q} > {log:q} 2>&1"


rule baseline:
    input:
        model=model_inputs,
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
        gpu=model_resource("gpu"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
        runtime=lambda w: runtime_args(w.model),
        sweep=sweep_rows_args,
    shell:
        "neuron-ablation baseline --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} {params.runtime:q} {params.sweep:q} --threads {threads:q}"
        " --model-name={wildcards.model:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(evaluate_inputs),
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
        gpu=model_resource("gpu"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
        runtime=lambda w: runtime_args(w.model),
        fractions=FRACTIONS,
        optional=optional_args,
        sweep=sweep_args,
    shell:
        "neuron-ablation evaluate --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} {params.runtime:q} --threads {threads:q}"
        " --model-name={wildcards.model:q} --method {wildcards.method:q} --seed {wildcards.seed:q}"
        " --fraction {params.fractions:q} --selection {input.selection:q} {params.optional:q}"
        " {params.sweep:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"


if FOCUS_ONLY_SEEDS:

    # The seeds of eval.focus_seeds beyond `seeds`: the same job at the focus fractions only.
    use rule evaluate as evaluate_focus with:
        output:
            [
                paths.eval_result("{model}", "{method}", "{seed}", fraction)
                for fraction in FOCUS_FRACTIONS
            ],
        wildcard_constraints:
            method=_alternatives(
                m for m in config["methods"] if not method_spec(m).needs_training
            ),
            seed=_alternatives(str(s) for s in FOCUS_ONLY_SEEDS),
        params:
            model=lambda w: model_source(w.model),
            task=lambda w: MODELS[w.model]["task"],
            runtime=lambda w: runtime_args(w.model),
            fractions=FOCUS_FRACTIONS,
            optional=optional_args,
            sweep=sweep_args,
