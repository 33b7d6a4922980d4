# Stage 2: per-neuron mean and aligned fixed-width histograms -> Zarr.


rule statistics:
    input:
        model=get_model_digest,
        tokens=paths.tokens("{model}", "stats"),
    output:
        directory(paths.stats("{model}")),
    log:
        paths.log("statistics", "{model}"),
    benchmark:
        paths.benchmark("statistics", "{model}")
    conda:
        ENV
    threads: machine_threads
    resources:
        **model_resources(),
    params:
        **model_params(),
        dataset=model_setting("dataset"),
        bin_width=config["stats"]["bin_width"],
        low=config["stats"]["range"][0],
        high=config["stats"]["range"][1],
    shell:
        "neuron-ablation statistics --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.tokens:q} {params.runtime:q} --threads {threads:q}"
        " --bin-width {params.bin_width:q} --range {params.low:q} {params.high:q}"
        " --model-name={wildcards.model:q} --dataset-name={params.dataset:q}"
        " --model-digest {input.model:q} --out {output:q} > {log:q} 2>&1"
