"""Tests of the ``neuron_ablation.demo`` modules."""
