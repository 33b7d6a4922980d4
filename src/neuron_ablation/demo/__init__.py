"""The embedded demo: assets the pipeline builds or reads itself, so the default config needs no
model hub.

- :mod:`~neuron_ablation.demo.catalog`: every ``embedded:<name>`` and where it lives (standard
  library only);
- :mod:`~neuron_ablation.demo.assets`: pinned PyPI wheels, GGUF -> safetensors, Wikipedia
  leads -> jsonl;
- :mod:`~neuron_ablation.demo.image_sets`: the Fashion-MNIST and digits loaders;
- :mod:`~neuron_ablation.demo.vit` and :mod:`~neuron_ablation.demo.masked_lm`: the ViT and
  masked-LM trainers, on what they share in :mod:`~neuron_ablation.demo.training`;
- :mod:`~neuron_ablation.demo.cli`: their ``neuron-ablation`` subcommands
  (``workflow/rules/assets.smk`` calls them).

The rest of the package reaches this subpackage only through :mod:`neuron_ablation.sources`
(and ``cli.build_parser``'s call of :func:`~neuron_ablation.demo.cli.add_demo_commands`);
``tests/unit/test_sources.py`` enforces it.
"""
