# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Quick start: a finished run in a notebook
#
# Open a run of the pipeline, look at one neuron's histogram, peak-ablate half of the model's
# attention neurons and generate a few tokens before, during and after the ablation.
#
# Open it as a notebook with `jupytext --to notebook docs/examples/quickstart.py`, or run it as a
# script. It reads the run in `NEURON_ABLATION_RUN` (default: the current directory, where
# `snakemake --cores all` ran) and writes its figures to `NEURON_ABLATION_FIGURES` (default
# `figures/`). `tests/workflow/test_api_example.py` runs it on the tiny test pipeline.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import polars as pl
import torch

import neuron_ablation as na

RUN = Path(os.environ.get("NEURON_ABLATION_RUN", "."))
FIGURES = Path(os.environ.get("NEURON_ABLATION_FIGURES", "figures"))
FIGURES.mkdir(parents=True, exist_ok=True)

run = na.open_run(RUN)
name = os.environ.get("NEURON_ABLATION_MODEL", run.models[0])
print(f"neuron_ablation {na.__version__}; models of the run: {run.models}; using {name!r}")

# %% [markdown]
# ## Statistics: one neuron's histogram
#
# `run.statistics` is the model's statistics store as an `xarray.Dataset` (checked like
# `neuron-ablation verify` does). Bin `k` covers `[k * bin_width, (k + 1) * bin_width)`; the `bin`
# coordinate holds `k`. We take the neuron of layer 0 whose peak and mean are furthest apart.

# %%
ds = run.statistics(name)
print(ds)
layer = 0
neuron = int(abs(ds["peak"] - ds["mean"]).sel(layer=layer).argmax("neuron"))
part = ds.sel(layer=layer, neuron=neuron).load()
width = ds.attrs["bin_width"]
counts = part["hist"].values
filled = np.flatnonzero(counts)
lo, hi = filled[0], filled[-1] + 1
edges = (ds.attrs["bin_index_offset"] + np.arange(lo, hi + 1)) * width  # bin j: k = offset + j

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.stairs(counts[lo:hi], edges, fill=True, color="tab:gray", alpha=0.6)
for label, value, style in [
    ("zero", 0.0, "-"),
    ("mean", float(part["mean"]), "--"),
    ("peak", float(part["peak"]), ":"),
]:
    ax.axvline(value, linestyle=style, color="black", label=f"{label} {value:.3g}")
ax.set(xlabel="activation", ylabel="count", title=f"{name}: layer {layer} neuron {neuron}")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "neuron_histogram.png", dpi=100)
print(f"underflow {int(part['underflow'])}, overflow {int(part['overflow'])}")

# %% [markdown]
# ## Selection, constants and results
#
# The neurons a seed ablates at a fraction, the constants of a method (also in TransformerLens'
# `hook_z` layout, `[layer, head, d_head]`), and the run's tables as polars frames.

# %%
mask = run.selection(name, seed=0, fraction=0.5)
peak = run.constants(name, "peak")
peak_heads = run.constants(name, "peak", layout="head")
print(f"selection {mask.shape}: {int(mask.sum())} neurons ablated")
print(f"peak constants per neuron {peak.shape}, per head (hook_z layout) {peak_heads.shape}")
assert (peak_heads.reshape(peak.shape) == peak).all()

results = run.results().filter(model=name)
print(results.filter(fraction=0.5).select("method", "seed", "top1", "loss"))

fig, ax = plt.subplots(figsize=(6, 3.5))
for method in results["method"].unique().sort():
    curve = results.filter(method=method).group_by("fraction").agg(pl.col("loss").mean())
    curve = curve.sort("fraction")
    ax.plot(curve["fraction"], curve["loss"], marker="o", label=method)
ax.set(xlabel="fraction of neurons ablated", ylabel="cross-entropy (mean over seeds)", title=name)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIGURES / "loss_by_fraction.png", dpi=100)

# %% [markdown]
# ## Ablate a live model and generate
#
# `na.ablated` folds the ablation into the attention output projections (the fold the pipeline's
# evaluation uses) and restores the weights bit for bit when the block ends. Inside the block the
# model scores exactly the run's evaluation JSON.

# %%
model = run.load_model(name, device="cpu")
tokenizer = run.tokenizer(name)
prompt = torch.tensor(run.inputs(name)["input_ids"][:1, :8])


def generate(model: torch.nn.Module) -> str:
    with torch.no_grad():
        ids = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    return tokenizer.decode(ids[0, prompt.shape[1] :])


print("prompt: ", tokenizer.decode(prompt[0]))
before = generate(model)
print("clean:  ", before)
with na.ablated(model, run, name, method="peak", fraction=0.5, seed=0) as ablation:
    print(f"peak-ablated ({ablation.n_ablated} neurons):", generate(model))
    scored = na.evaluate(model, run, name)
expected = run.evaluation(name, "peak", seed=0, fraction=0.5)
print(f"top-1 in the block {scored['top1']:.4f}, in the run's JSON {expected['top1']:.4f}")
assert scored["top1"] == expected["top1"] and scored["loss"] == expected["loss"]
after = generate(model)
print("after:  ", after)
assert after == before, "the weights were restored"

# %% [markdown]
# ## Statistics of your own batches
#
# `na.collect_statistics` runs the `statistics` stage's pass on any batches of token ids (here
# the first statistics sequences of the run) and returns the same kind of Dataset.

# %%
ids = run.inputs(name, "stats")["input_ids"][:8]
low = ds.attrs["bin_index_offset"] * width
high = low + ds.attrs["n_bins"] * width
own = na.collect_statistics(model, [ids[:4], ids[4:]], bin_width=width, range=(low, high))
print(
    f"{own.attrs['n_tokens']} tokens of our own: layer {layer} neuron {neuron} has peak "
    f"{own['peak'].sel(layer=layer, neuron=neuron).item():.3f}, mean "
    f"{own['mean'].sel(layer=layer, neuron=neuron).item():.4f}"
)
