# Stage 6: Figure 1 and the most atypical neurons per model, the paired comparison of methods,
# and the description of the HTML report (`snakemake --report report.html`).


report: "../report/workflow.rst"


rule neurons:
    input:
        stats=paths.stats("{model}"),
        model=get_model_digest,
    output:
        figure=report(
            paths.neurons_figure("{model}"),
            caption="../report/neurons.rst",
            category="Neurons",
            subcategory="{model}",
            labels={"model": "{model}", "content": "Figure 1: neuron distributions"},
        ),
        csv=report(
            paths.top_neurons("{model}"),
            caption="../report/top_neurons.rst",
            category="Neurons",
            subcategory="{model}",
            labels={"model": "{model}", "content": "most atypical neurons (CSV)"},
        ),
    log:
        paths.log("neurons", "{model}"),
    benchmark:
        paths.benchmark("neurons", "{model}")
    conda:
        ENV
    params:
        top=20,
        panels=3,
    shell:
        "neuron-ablation neurons {input.stats:q} --model-digest {input.model:q} --figure {output.figure:q} --csv {output.csv:q}"
        " --top {params.top:q} --panels {params.panels:q} > {log:q} 2>&1"


rule compare:
    input:
        ablation=paths.table("ablation.csv"),
        sequences=paths.table("sequences.parquet"),
    output:
        csv=report(
            paths.table("comparison.csv"),
            caption="../report/comparison.rst",
            category="Comparison",
            labels={"table": "paired differences"},
        ),
        markdown=report(
            paths.table("comparison.md"),
            caption="../report/comparison_md.rst",
            category="Comparison",
            labels={"table": "verdict per model"},
        ),
        plan=report(
            paths.table("plan.csv"),
            caption="../report/plan.rst",
            category="Comparison",
            labels={"table": "what a decision costs"},
        ),
    log:
        paths.log("compare"),
    benchmark:
        paths.benchmark("compare")
    conda:
        ENV
    params:
        confidence=0.95,
    shell:
        "neuron-ablation compare {input.ablation:q} --sequences {input.sequences:q}"
        " --csv {output.csv:q} --markdown {output.markdown:q} --plan {output.plan:q}"
        " --confidence {params.confidence:q} > {log:q} 2>&1"
