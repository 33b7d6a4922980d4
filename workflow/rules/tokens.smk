# Stage 1: dataset -> fixed-length token sequences (Arrow IPC), disjoint for statistics and evaluation.


rule tokenize:
    input:
        tokenize_inputs,
    output:
        paths.tokens("{model}", "{part}"),
    log:
        paths.log("tokenize", "{model}_{part}"),
    benchmark:
        paths.benchmark("tokenize", "{model}_{part}")
    conda:
        ENV
    params:
        model=lambda w: model_source(w.model),
        dataset=lambda w: dataset_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
        n=lambda w: input_count(config, w.model, w.part),
        seq_len=lambda w: MODELS[w.model]["seq_len"],
        mask_seed=lambda w: MODELS[w.model]["mask_seed"],
        split=tokenize_args,
    shell:
        "neuron-ablation tokenize --model-source={params.model:q} --task {params.task:q}"
        " --dataset-source={params.dataset:q} --part {wildcards.part:q} --n {params.n:q}"
        " --seq-len {params.seq_len:q} --mask-seed {params.mask_seed:q} {params.split:q}"
        " --out {output:q} > {log:q} 2>&1"
