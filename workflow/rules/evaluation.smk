# Stage 3: nested random neuron selection per seed; stage 4: one evaluation per
# (model, method, seed, fraction).


rule select_neurons:
    input:
        model_inputs,
    output:
        directory(f"{RESULTS}/{{model}}/selection/seed{{seed}}.zarr"),
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
    log:
        f"{LOGS}/select_neurons/{{model}}_seed{{seed}}.log",
    benchmark:
        f"{BENCH}/select_neurons/{{model}}_seed{{seed}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation select --model-source {params.model} --task {params.task}"
        " --seed {wildcards.seed} --out {output} > {log} 2>&1"


rule baseline:
    input:
        model=model_inputs,
        tokens=f"{RESULTS}/{{model}}/tokens/eval.arrow",
    output:
        f"{RESULTS}/{{model}}/eval/baseline.json",
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
        runtime=lambda w: runtime_args(w.model),
    threads: 1
    resources:
        gpu=model_resource("gpu"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    log:
        f"{LOGS}/baseline/{{model}}.log",
    benchmark:
        f"{BENCH}/baseline/{{model}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation baseline --model-source {params.model} --task {params.task}"
        " --tokens {input.tokens} {params.runtime} --threads {threads} --out {output}"
        " > {log} 2>&1"


def evaluate_inputs(wildcards):
    inputs = {
        "model": model_inputs(wildcards),
        "tokens": f"{RESULTS}/{wildcards.model}/tokens/eval.arrow",
        "selection": f"{RESULTS}/{wildcards.model}/selection/seed{wildcards.seed}.zarr",
    }
    if wildcards.method in NEEDS_STATISTICS:
        inputs["stats"] = f"{RESULTS}/{wildcards.model}/stats.zarr"
    if wildcards.method.startswith("resample-") and float(wildcards.fraction) > 0.0:
        inputs["bank"] = resample_bank(wildcards.model, wildcards.method)
    if float(wildcards.fraction) == 0.0:
        inputs["baseline"] = f"{RESULTS}/{wildcards.model}/eval/baseline.json"
    return inputs


def optional_args(wildcards, input):
    names = ("stats", "baseline", "bank")
    args = [f"--{name} {input[name]}" for name in names if name in input.keys()]
    return " ".join(args)


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        f"{RESULTS}/{{model}}/eval/{{method}}/seed{{seed}}/frac{{fraction}}.json",
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
        runtime=lambda w: runtime_args(w.model),
        optional=optional_args,
    threads: 1
    resources:
        gpu=model_resource("gpu"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    log:
        f"{LOGS}/evaluate/{{model}}/{{method}}_seed{{seed}}_frac{{fraction}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{model}}/{{method}}_seed{{seed}}_frac{{fraction}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation evaluate --model-source {params.model} --task {params.task}"
        " --tokens {input.tokens} {params.runtime} --threads {threads}"
        " --method {wildcards.method} --seed {wildcards.seed} --fraction {wildcards.fraction}"
        " --selection {input.selection} {params.optional} --out {output} > {log} 2>&1"
