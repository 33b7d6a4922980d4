# Stage 1: dataset -> fixed-length token sequences (Arrow IPC), disjoint for statistics and evaluation.


rule tokenize:
    input:
        tokenize_inputs,
    output:
        f"{RESULTS}/{{model}}/tokens/{{part}}.arrow",
    log:
        f"{LOGS}/tokenize/{{model}}_{{part}}.log",
    benchmark:
        f"{BENCH}/tokenize/{{model}}_{{part}}.tsv"
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
        "neuron-ablation tokenize --model-source {params.model} --task {params.task}"
        " --dataset-source {params.dataset} --part {wildcards.part} --n {params.n}"
        " --seq-len {params.seq_len} --mask-seed {params.mask_seed} {params.split}"
        " --out {output} > {log} 2>&1"
