# Activation resampling (methods resample-*): seeded random inputs per (model, source), stored as
# the exact ids/pixels fed to the model, and the clean model's z on them (HDF5 bank).
# Pairing at evaluation: see neuron_ablation.resampling.


rule resample_inputs:
    input:
        model=model_inputs,
        generator=resample_inputs_inputs,
    output:
        paths.resample_inputs("{model}", "{source}"),
    log:
        paths.log("resample_inputs", "{model}_{source}"),
    benchmark:
        paths.benchmark("resample_inputs", "{model}_{source}")
    wildcard_constraints:
        source=RESAMPLE_SOURCES,
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
        settings=resample_settings,
        batch_size=lambda w: MODELS[w.model]["batch_size"],
        device=lambda w: MODELS[w.model]["device"],
        dtype=lambda w: MODELS[w.model]["dtype"],
    shell:
        "neuron-ablation resample-inputs --model-source={params.model:q} --task {params.task:q}"
        " --source {wildcards.source:q} {params.settings:q}"
        " --batch-size {params.batch_size:q} --device {params.device:q} --dtype {params.dtype:q}"
        " --threads {threads:q} --model-digest {input.model:q} --out {output:q} > {log:q} 2>&1"


rule resample_bank:
    input:
        model=model_inputs,
        inputs=paths.resample_inputs("{model}", "{source}"),
    output:
        paths.resample_bank("{model}", "{source}"),
    log:
        paths.log("resample_bank", "{model}_{source}"),
    benchmark:
        paths.benchmark("resample_bank", "{model}_{source}")
    wildcard_constraints:
        source=RESAMPLE_SOURCES,
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
        runtime=lambda w: runtime_args(w.model),
    shell:
        "neuron-ablation resample-bank --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.inputs:q} {params.runtime:q} --threads {threads:q}"
        " --model-name={wildcards.model:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"
