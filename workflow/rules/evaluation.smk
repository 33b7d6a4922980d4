# Stage 3: nested random neuron selection per seed; stage 4: one result per
# (model, method, seed, fraction), written by one job per (model, method, seed) that loads the
# model once and scores every fraction.


rule select_neurons:
    input:
        model_inputs,
    output:
        directory(f"{RESULTS}/{{model}}/selection/seed{{seed}}.zarr"),
    log:
        f"{LOGS}/select_neurons/{{model}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}/select_neurons/{{model}}_seed{{seed}}.tsv"
    conda:
        ENV
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
    shell:
        "neuron-ablation select --model-source={params.model:q} --task {params.task:q}"
        " --seed {wildcards.seed:q} --out {output:q} > {log:q} 2>&1"


rule baseline:
    input:
        model=model_inputs,
        tokens=f"{RESULTS}/{{model}}/tokens/eval.arrow",
    output:
        f"{RESULTS}/{{model}}/eval/baseline.json",
    log:
        f"{LOGS}/baseline/{{model}}.log",
    benchmark:
        f"{BENCH}/baseline/{{model}}.tsv"
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
    shell:
        "neuron-ablation baseline --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} {params.runtime:q} --threads {threads:q} --out {output:q}"
        " > {log:q} 2>&1"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        [
            eval_result("{model}", "{method}", "{seed}", fraction)
            for fraction in FRACTIONS
        ],
    log:
        f"{LOGS}/evaluate/{{model}}/{{method}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{method}}_seed{{seed}}.tsv"
    wildcard_constraints:
        method=_alternatives(
            m for m in config["methods"] if not method_spec(m).needs_training
        ),
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
        " --method {wildcards.method:q} --seed {wildcards.seed:q}"
        " --fraction {params.fractions:q} --selection {input.selection:q} {params.optional:q}"
        " {params.sweep:q}"
        " --out {output:q} > {log:q} 2>&1"
