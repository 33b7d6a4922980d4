# Stage 1: dataset -> fixed-length token sequences (Arrow IPC), disjoint for statistics and evaluation.


rule tokenize:
    input:
        model=get_model_digest,
        data=get_dataset_files,
    output:
        paths.tokens("{model}", "{part}"),
    log:
        paths.log("tokenize", "{model}_{part}"),
    benchmark:
        paths.benchmark("tokenize", "{model}_{part}")
    conda:
        ENV
    params:
        **model_params(runtime=False),
        dataset=lambda w: dataset_source(w.model),
        n=lambda w: input_count(config, w.model, w.part),
        seq_len=model_setting("seq_len"),
        mask_seed=model_setting("mask_seed"),
        split=get_dataset_split_args,
    shell:
        "neuron-ablation tokenize --model-source={params.model:q} --task {params.task:q}"
        " --dataset-source={params.dataset:q} --part {wildcards.part:q} --n {params.n:q}"
        " --seq-len {params.seq_len:q} --mask-seed {params.mask_seed:q} {params.split:q}"
        " --model-digest {input.model:q} --out {output:q} > {log:q} 2>&1"


# The model's identity in every provenance record: sha256 of its config, weight and tokenizer
# files, hashed once per run (not in every job). Its inputs are those files one by one, so a
# file overwritten in place reruns it and everything downstream (docs/provenance.md). A hub
# model is downloaded here (where Snakemake runs, like fetch_wheel) and digested from its cache.
localrules:
    model_digest,


rule model_digest:
    input:
        get_model_files,
    output:
        paths.model_digest("{model}"),
    log:
        paths.log("model_digest", "{model}"),
    benchmark:
        paths.benchmark("model_digest", "{model}")
    conda:
        ENV
    params:
        model=get_model_source,
    shell:
        "neuron-ablation model-digest --model-source={params.model:q} --out {output:q}"
        " > {log:q} 2>&1"
