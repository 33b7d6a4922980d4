import copy

import pytest

from neuron_ablation.config import (
    ConfigError,
    focus_only_blocks,
    focus_seeds,
    method_fractions,
    optimal_settings,
    seeds_at,
    sweep_items,
    validate_config,
)
from neuron_ablation.demo.catalog import demo_mlm_split


def test_defaults_are_filled(good):
    config = copy.deepcopy(good)
    del config["stats"], config["methods"]
    validate_config(config)
    assert config["methods"] == ["zero", "mean", "peak"]
    assert config["stats"]["bin_width"] == 0.01
    assert config["models"]["tiny"]["dtype"] == "float32"


BAD = [
    (lambda c: c.update(methods=["zero", "median"]), r"methods\[1\].*'median'.*zero.*mean.*peak"),
    (lambda c: c.update(fractions=[0.0, 1.5]), r"fractions\[1\].*1.5"),
    (lambda c: c["models"]["tiny"].update(dataset="pile"), r"models.tiny.dataset.*'pile'.*corpus"),
    (lambda c: c["models"]["tiny"].update(task="seq2seq"), r"models.tiny.task.*seq2seq.*causal-lm"),
    (lambda c: c["stats"].update(bin_width=0), r"stats.bin_width"),
    (lambda c: c["stats"].update(bin_width=-0.1), r"stats.bin_width"),
    (lambda c: c["stats"].update(range=[1.0, -1.0]), r"stats.range"),
    (lambda c: c["models"]["tiny"].update(source="embedded:gpt5"), r"embedded:smollm2-135m"),
    (lambda c: c["datasets"]["corpus"].update(source="./missing.jsonl"), r"does not exist"),
    (lambda c: c.update(fractions=[0.125]), r"fractions.*two decimals"),
    (lambda c: c.update(color="red"), r"color"),
    (lambda c: c["models"]["tiny"].update(eval={"n_token": 5}), r"models.tiny.eval.*n_token"),
    (
        lambda c: c["models"].update(tiny_neurons=c["models"]["tiny"]),
        r"models.tiny_neurons: .*collides with model 'tiny'",
    ),
    (lambda c: c.update(optimal={"fractions": [0.3]}), r"optimal.fractions: \[0.3\].*grid"),
    (lambda c: c.update(optimal={"lr": 0}), r"optimal.lr"),
    (lambda c: c.update(optimal={"step": 3}), r"optimal.*step.*allowed keys"),
    (
        lambda c: c.update(eval={"sweep": {"n_tokens": 32}, "focus": [0.7]}),
        r"eval.focus: \[0.7\] are not in fractions",
    ),
    (
        lambda c: c.update(eval={"focus_seeds": 5, "focus": [0.7]}),
        r"eval.focus: \[0.7\] are not in fractions",
    ),
    (
        lambda c: c.update(eval={"focus_seeds": 1}),
        r"eval.focus_seeds: 1 is fewer than the 2 seeds of `seeds`; allowed: null or at least",
    ),
    (lambda c: c.update(eval={"focus_seeds": 0}), r"eval.focus_seeds"),
    (
        lambda c: c.update(eval={"focus_seeds_per_job": 0}),
        r"eval.focus_seeds_per_job: 0 is less than the minimum of 1",
    ),
    (
        lambda c: c.update(eval={"focus_seeds_per_job": "all"}),
        r"eval.focus_seeds_per_job: 'all' is not of type 'integer'",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), BAD)
def test_bad_config_names_field_and_allowed_values(good, mutate, message):
    config = copy.deepcopy(good)
    mutate(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def two_wikipedia_datasets(split_seeds: tuple[int, int]) -> dict:
    config = {
        "models": {
            name: {"source": "embedded:minilm-mlm-wikipedia", "task": "masked-lm", "dataset": name}
            for name in ("a", "b")
        },
        "datasets": {
            name: {"source": "embedded:wikipedia-leads", "split_seed": seed}
            for name, seed in zip(("a", "b"), split_seeds, strict=True)
        },
    }
    return validate_config(config) if split_seeds[0] == split_seeds[1] else config


def test_demo_mlm_holds_out_the_evaluation_split():
    config = two_wikipedia_datasets((7, 7))
    assert demo_mlm_split(config) == (0.2, 7)
    with pytest.raises(ConfigError, match=r"datasets.a.eval_share/split_seed = 0.2/3.*only one"):
        validate_config(two_wikipedia_datasets((3, 4)))


def test_optimal_fractions_and_per_model_settings(good):
    config = copy.deepcopy(good)
    config["optimal"] = {"fractions": [0.9], "steps": 7}
    config["models"]["tiny"]["optimal"] = {"lr": 0.3}
    validate_config(config)
    assert method_fractions(config, "optimal") == [0.0, 0.9]  # 0 is the shared baseline
    assert method_fractions(config, "mean") == config["fractions"]
    settings = optimal_settings(config, "tiny")
    assert settings == {"steps": 7, "batch_size": 8, "seq_len": 16, "lr": 0.3}


def test_sweep_rows_per_model(good):
    config = copy.deepcopy(good)
    validate_config(config)
    assert sweep_items(config, "tiny") is None  # no sweep: every fraction on all of eval
    config["eval"]["sweep"] = {"n_tokens": 40}
    assert sweep_items(config, "tiny") == 3  # ceil(40 / seq_len 16)
    config["models"]["tiny"]["eval"] = {"sweep": {"n_tokens": 16}}
    assert sweep_items(config, "tiny") == 1


# Snakemake reading the config: tests/workflow/test_snakemake_config.py.


def test_focus_seeds_extend_the_seeds_at_the_focus_fractions_only(good):
    config = copy.deepcopy(good)
    config["seeds"] = [3, 7]
    config["eval"] = {"focus_seeds": 5, "focus": [0.5]}
    validate_config(config)
    assert focus_seeds(config) == [3, 7, 8, 9, 10]
    assert seeds_at(config, "tiny", "peak", 0.5) == [3, 7, 8, 9, 10]
    assert seeds_at(config, "tiny", "peak", 0.9) == [3, 7]
    assert seeds_at(config, "tiny", "optimal", 0.5) == [3, 7]  # optimal.seeds: null = `seeds`
    del config["eval"]["focus_seeds"]
    validate_config(config)
    assert seeds_at(config, "tiny", "peak", 0.5) == [3, 7]


def test_focus_methods_and_optimal_seeds_choose_who_gets_the_seeds(good):
    config = copy.deepcopy(good)
    config["methods"] = ["zero", "mean", "peak", "optimal"]
    config["seeds"] = [3, 7]
    config["eval"] = {"focus_seeds": 5, "focus": [0.5], "focus_methods": ["mean", "peak"]}
    config["optimal"] = {"seeds": 1}
    config["models"]["other"] = copy.deepcopy(config["models"]["tiny"]) | {"optimal": {"seeds": 4}}
    validate_config(config)
    assert seeds_at(config, "tiny", "zero", 0.5) == [3, 7]  # not a focus method: `seeds`
    assert seeds_at(config, "tiny", "mean", 0.5) == [3, 7, 8, 9, 10]
    assert seeds_at(config, "tiny", "optimal", 0.5) == [3]  # the first of the focus seeds
    assert seeds_at(config, "other", "optimal", 0.5) == [3, 7, 8, 9]  # the model's own
    assert "seeds" not in optimal_settings(config, "other")  # not a training argument
    del config["eval"]["focus_methods"]
    validate_config(config)
    assert seeds_at(config, "tiny", "zero", 0.5) == [3, 7, 8, 9, 10]  # null: all but optimal


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["eval"].update(focus_methods=["mean", "median"]),
            r"eval.focus_methods: \['median'\] are not methods.*allowed: \['zero', 'mean'",
        ),
        (
            lambda c: c["eval"].update(focus_methods=["optimal"]),
            r"eval.focus_methods: \['optimal'\].*optimal.seeds",
        ),
        (
            lambda c: c.update(optimal={"seeds": 6}),
            r"optimal.seeds: 6 is more than the 5 seeds.*allowed: 1 to 5",
        ),
        (
            lambda c: c["models"]["tiny"].update(optimal={"seeds": 9}),
            r"models.tiny.optimal.seeds: 9 is more than the 5 seeds",
        ),
        (lambda c: c.update(optimal={"seeds": 0}), r"optimal.seeds"),
        (lambda c: c["eval"].update(focus_methods=[]), r"eval.focus_methods"),
    ],
)
def test_bad_seed_counts_are_refused_naming_the_field(good, change, message):
    config = copy.deepcopy(good)
    config["methods"] = ["zero", "mean", "peak", "optimal"]
    config["eval"] = {"focus_seeds": 5}
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


@pytest.mark.parametrize(
    ("per_job", "blocks"),
    [(None, [[8, 9, 10, 11, 12]]), (2, [[8, 9], [10, 11], [12]]), (5, [[8, 9, 10, 11, 12]]),
     (1, [[8], [9], [10], [11], [12]])],
)  # fmt: skip
def test_focus_only_seeds_are_cut_into_blocks_of_one_job(good, per_job, blocks):
    config = copy.deepcopy(good)
    config["seeds"] = [3, 7]
    config["eval"] = {"focus_seeds": 7} | ({"focus_seeds_per_job": per_job} if per_job else {})
    validate_config(config)  # the default: 10 seeds per job
    assert focus_only_blocks(config) == blocks
    del config["eval"]["focus_seeds"]
    assert focus_only_blocks(validate_config(config)) == []
