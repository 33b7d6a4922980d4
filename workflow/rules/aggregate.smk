# Stage 5: tables over all models, one figure per model, and one target per model's branch.


rule tables:
    input:
        results=[path for model in MODELS for path in model_eval_results(model)],
        baselines=sweep_baselines(),
    output:
        ablation=report(
            paths.table("ablation.csv"),
            caption="../report/ablation.rst",
            category="Ablation",
            subcategory="Tables",
            labels={"table": "all evaluations"},
        ),
        sequences=paths.table("sequences.parquet"),
        table2=report(
            paths.table("table2.csv"),
            caption="../report/table2.rst",
            category="Ablation",
            subcategory="Tables",
            labels={"table": "Table 2 (csv)"},
        ),
        table2_md=report(
            paths.table("table2.md"),
            caption="../report/table2_md.rst",
            category="Ablation",
            subcategory="Tables",
            labels={"table": "Table 2 (markdown)"},
        ),
    log:
        paths.log("tables"),
    benchmark:
        paths.benchmark("tables")
    conda:
        ENV
    params:
        tables=lambda wildcards, output: Path(output.ablation).parent,
        baselines=baseline_args,
    shell:
        "neuron-ablation aggregate --tables {params.tables:q} {params.baselines:q}"
        " {input.results:q} > {log:q} 2>&1"


rule figure:
    input:
        results=get_eval_results,
        baselines=lambda w: sweep_baselines(w.model),
    output:
        report(
            paths.figure("{model}"),
            caption="../report/figure.rst",
            category="Ablation",
            subcategory="Figures",
            labels={"model": "{model}", "figure": "top-1 and CE against fraction"},
        ),
    log:
        paths.log("figure", "{model}"),
    benchmark:
        paths.benchmark("figure", "{model}")
    conda:
        ENV
    params:
        baselines=baseline_args,
    shell:
        "neuron-ablation plot --out {output:q} {params.baselines:q} {input.results:q}"
        " > {log:q} 2>&1"


for _model in MODELS:

    rule:
        name:
            _model
        input:
            model_outputs(_model),
