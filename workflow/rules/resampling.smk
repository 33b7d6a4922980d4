# Activation resampling (methods resample-*): seeded random inputs per (model, source), stored as
# the exact ids/pixels fed to the model, and the clean model's z on them (HDF5 bank).
# Pairing at evaluation: see neuron_ablation.resampling.


rule resample_inputs:
    input:
        model=get_model_digest,
        generator=get_generator_files,
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
        **model_resources(),
    params:
        **model_params(),
        settings=get_resample_args,
    shell:
        "neuron-ablation resample-inputs --model-source={params.model:q} --task {params.task:q}"
        " --source {wildcards.source:q} {params.settings:q}"
        " {params.runtime:q} --threads {threads:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"


rule resample_bank:
    input:
        model=get_model_digest,
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
        **model_resources(),
    params:
        **model_params(),
    shell:
        "neuron-ablation resample-bank --model-source={params.model:q} --task {params.task:q}"
        " --tokens {input.inputs:q} {params.runtime:q} --threads {threads:q}"
        " --model-name={wildcards.model:q} --model-digest {input.model:q}"
        " --out {output:q} > {log:q} 2>&1"
