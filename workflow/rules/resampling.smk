# Activation resampling (methods resample-*): seeded random inputs per (model, source), stored as
# the exact ids/pixels fed to the model, and the clean model's z on them (HDF5 bank).
# Pairing at evaluation: see neuron_ablation.resampling.

RESAMPLE = config["resample"]
RESAMPLE_SOURCES = "chars|tokens|generated|pixels"


def resample_bank(model, method):
    return f"{RESULTS}/{model}/resample/{method.removeprefix('resample-')}.h5"


def generator_source(model):
    """The causal LM that writes resample-generated text: the model itself unless configured."""
    generator = RESAMPLE["generator"]
    if generator is None:
        return model_source(model)
    if generator in MODELS:
        return model_source(generator)
    asset = embedded(generator)
    return f"resources/models/{asset}" if asset else generator


def resample_inputs_inputs(wildcards):
    paths = [model_source(wildcards.model)]
    if wildcards.source == "generated":
        paths.append(generator_source(wildcards.model))
    return local_inputs(*paths)


def resample_settings(wildcards):
    model = wildcards.model
    args = [
        f"--n-sequences {RESAMPLE['n_sequences']}",
        f"--seed {RESAMPLE['seed']}",
        f"--seq-len {RESAMPLE['seq_len'] or MODELS[model]['seq_len']}",
    ]
    if wildcards.source == "chars":
        args.append(f"--space-probability {RESAMPLE['space_probability']}")
    if wildcards.source == "generated":
        args += [f"--temperature {RESAMPLE['temperature']}", f"--top-k {RESAMPLE['top_k']}"]
        if generator_source(model) != model_source(model):
            args.append(f"--generator-source {generator_source(model)}")
    return " ".join(args)


rule resample_inputs:
    input:
        resample_inputs_inputs,
    output:
        f"{RESULTS}/{{model}}/resample/{{source}}.inputs.arrow",
    wildcard_constraints:
        source=RESAMPLE_SOURCES,
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
        settings=resample_settings,
        batch_size=lambda w: MODELS[w.model]["batch_size"],
        device=lambda w: MODELS[w.model]["device"],
        dtype=lambda w: MODELS[w.model]["dtype"],
    threads: 1
    resources:
        gpu=model_resource("gpu"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    log:
        f"{LOGS}/resample_inputs/{{model}}_{{source}}.log",
    benchmark:
        f"{BENCH}/resample_inputs/{{model}}_{{source}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation resample-inputs --model-source {params.model} --task {params.task}"
        " --source {wildcards.source} {params.settings} --batch-size {params.batch_size}"
        " --device {params.device} --dtype {params.dtype} --threads {threads} --out {output}"
        " > {log} 2>&1"


rule resample_bank:
    input:
        model=model_inputs,
        inputs=f"{RESULTS}/{{model}}/resample/{{source}}.inputs.arrow",
    output:
        f"{RESULTS}/{{model}}/resample/{{source}}.h5",
    wildcard_constraints:
        source=RESAMPLE_SOURCES,
    params:
        model=lambda w: model_source(w.model),
        task=lambda w: MODELS[w.model]["task"],
        runtime=lambda w: runtime_args(w.model),
    threads: 1
    resources:
        gpu=model_resource("gpu"),
        mem_mb=model_resource("mem_mb"),
        runtime=model_resource("runtime"),
    log:
        f"{LOGS}/resample_bank/{{model}}_{{source}}.log",
    benchmark:
        f"{BENCH}/resample_bank/{{model}}_{{source}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation resample-bank --model-source {params.model} --task {params.task}"
        " --tokens {input.inputs} {params.runtime} --threads {threads}"
        " --model-name {wildcards.model} --out {output} > {log} 2>&1"
