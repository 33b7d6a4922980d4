# Stage 6: Figure 1 and the most atypical neurons per model, the paired comparison of methods,
# and the description of the HTML report (`snakemake --report report.html`).


report: "../report/workflow.rst"


rule neurons:
    input:
        f"{RESULTS}/{{model}}/stats.zarr",
    output:
        figure=report(
            f"{RESULTS}/figures/{{model}}_neurons.png",
            caption="../report/neurons.rst",
            category="Neurons",
            subcategory="{model}",
            labels={"model": "{model}", "content": "Figure 1: neuron distributions"},
        ),
        csv=report(
            f"{RESULTS}/tables/{{model}}_top_neurons.csv",
            caption="../report/top_neurons.rst",
            category="Neurons",
            subcategory="{model}",
            labels={"model": "{model}", "content": "most atypical neurons (CSV)"},
        ),
    log:
        f"{LOGS}/neurons/{{model}}.log",
    benchmark:
        f"{BENCH}/neurons/{{model}}.tsv"
    conda:
        ENV
    params:
        top=20,
        panels=3,
    shell:
        "neuron-ablation neurons {input:q} --figure {output.figure:q} --csv {output.csv:q}"
        " --top {params.top:q} --panels {params.panels:q} > {log:q} 2>&1"


rule compare:
    input:
        ablation=f"{RESULTS}/tables/ablation.csv",
        sequences=f"{RESULTS}/tables/sequences.parquet",
    output:
        csv=report(
            f"{RESULTS}/tables/comparison.csv",
            caption="../report/comparison.rst",
            category="Comparison",
            labels={"table": "paired differences"},
        ),
        markdown=report(
            f"{RESULTS}/tables/comparison.md",
            caption="../report/comparison_md.rst",
            category="Comparison",
            labels={"table": "verdict per model"},
        ),
    log:
        f"{LOGS}/compare.log",
    benchmark:
        f"{BENCH}/compare.tsv"
    conda:
        ENV
    params:
        confidence=0.95,
    shell:
        "neuron-ablation compare {input.ablation:q} --sequences {input.sequences:q}"
        " --csv {output.csv:q} --markdown {output.markdown:q}"
        " --confidence {params.confidence:q} > {log:q} 2>&1"
