# Stage 5: tables over all models, one figure per model, and one target per model's branch.


rule tables:
    input:
        [path for model in MODELS for path in model_eval_results(model)],
    output:
        ablation=f"{RESULTS}/tables/ablation.csv",
        table2=f"{RESULTS}/tables/table2.csv",
        table2_md=f"{RESULTS}/tables/table2.md",
    log:
        f"{LOGS}/tables.log",
    benchmark:
        f"{BENCH}/tables.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation aggregate --tables {RESULTS}/tables {input} > {log} 2>&1"


rule figure:
    input:
        lambda w: model_eval_results(w.model),
    output:
        f"{RESULTS}/figures/{{model}}.png",
    log:
        f"{LOGS}/figure/{{model}}.log",
    benchmark:
        f"{BENCH}/figure/{{model}}.tsv"
    conda:
        ENV
    shell:
        "neuron-ablation plot --out {output} {input} > {log} 2>&1"


for _model in MODELS:

    rule:
        name:
            _model
        input:
            model_outputs(_model),
