# Optimal ablation: constants learned on the statistics split per (model, seed), then scored like
# every other constant method at the fractions of `optimal.fractions`.


rule optimal:
    input:
        model=model_inputs,
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
        gpu=model_resource("gpu"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
        device=lambda w: MODELS[w.model]["device"],
        dtype=lambda w: MODELS[w.model]["dtype"],
        fractions=[f for f in OPTIMAL_FRACTIONS if float(f) > 0],
        seq_len=lambda w: optimal_settings(config, w.model)["seq_len"],
        steps=lambda w: optimal_settings(config, w.model)["steps"],
        batch_size=lambda w: optimal_settings(config, w.model)["batch_size"],
        lr=lambda w: optimal_settings(config, w.model)["lr"],
    shell:
        "neuron-ablation optimal --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} --stats {input.stats:q} --selection {input.selection:q}"
        " --device {params.device:q} --dtype {params.dtype:q} --threads {threads:q}"
        " --seed {wildcards.seed:q} --fraction {params.fractions:q} --steps {params.steps:q}"
        " --batch-size {params.batch_size:q} --seq-len {params.seq_len:q} --lr {params.lr:q}"
        " --model-name {wildcards.model:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"


rule evaluate_optimal:
    input:
        unpack(evaluate_optimal_inputs),
    output:
        [
            paths.eval_result("{model}", "optimal", "{seed}", f)
            for f in OPTIMAL_FRACTIONS
        ],
    log:
        paths.log("evaluate", "{model}/optimal_seed{seed}"),
    benchmark:
        paths.benchmark("evaluate", "{model}/optimal_seed{seed}")
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
        batch_size=lambda w: MODELS[w.model]["batch_size"],
        device=lambda w: MODELS[w.model]["device"],
        dtype=lambda w: MODELS[w.model]["dtype"],
        fractions=OPTIMAL_FRACTIONS,
        optional=evaluate_optimal_args,
        sweep=sweep_args,
    shell:
        "neuron-ablation evaluate --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} --batch-size {params.batch_size:q}"
        " --device {params.device:q} --dtype {params.dtype:q} --threads {threads:q}"
        " --model-name={wildcards.model:q} --method optimal --seed {wildcards.seed:q}"
        " --fraction {params.fractions:q}"
        " --selection {input.selection:q} {params.optional:q} {params.sweep:q}"
        " --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"
