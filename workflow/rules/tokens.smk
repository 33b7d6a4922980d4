# Stage 1: dataset -> fixed-length token sequences (Arrow IPC), disjoint for statistics and evaluation.


def tokenize_inputs(wildcards):
    return local_inputs(model_source(wildcards.model), dataset_source(wildcards.model))


def tokenize_args(wildcards):
    d = dataset_of(wildcards.model)
    return (
        f"--text-field {d['text_field']} --stats-split {d['stats_split']} "
        f"--eval-split {d['eval_split']} --eval-share {d['eval_share']} "
        f"--split-seed {d['split_seed']}"
    )


rule tokenize:
    input:
        tokenize_inputs,
    output:
        f"{RESULTS}/{{model}}/tokens/{{part}}.arrow",
    params:
        model=lambda w: model_source(w.model),
        dataset=lambda w: dataset_source(w.model),
        n_tokens=lambda w: config[w.part]["n_tokens"],
        seq_len=lambda w: MODELS[w.model]["seq_len"],
        split=tokenize_args,
    log:
        f"{LOGS}/tokenize/{{model}}_{{part}}.log",
    benchmark:
        f"{BENCH}/tokenize/{{model}}_{{part}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation tokenize --model-source {params.model} --dataset-source {params.dataset}"
        " --part {wildcards.part} --n-tokens {params.n_tokens} --seq-len {params.seq_len}"
        " {params.split} --out {output} > {log} 2>&1"
