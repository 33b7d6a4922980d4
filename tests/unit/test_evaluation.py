import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuron_ablation.cli import main
from neuron_ablation.io import read_json, sequences_table
from neuron_ablation.scoring import evaluate
from tests.helpers.provenance import write_model_tokens
from tests.helpers.tiny_models import load


def test_causal_metrics_match_a_plain_loop(tiny_llama):
    model = load(tiny_llama, "llama")
    ids = np.random.default_rng(0).integers(4, 60, size=(5, 9))
    result = evaluate(model, {"input_ids": ids}, "causal-lm", batch_size=2)

    losses, correct = [], 0
    with torch.no_grad():
        for row in ids:
            logits = model(input_ids=torch.tensor(row[None])).logits[0]
            for t in range(len(row) - 1):
                log_probs = torch.log_softmax(logits[t].double(), dim=-1)
                losses.append(-float(log_probs[row[t + 1]]))
                correct += int(int(logits[t].argmax()) == row[t + 1])
    assert result["n_tokens"] == 5 * 8
    assert math.isclose(result["loss"], sum(losses) / len(losses), rel_tol=1e-5)
    assert result["top1"] == correct / len(losses)


def seed_chain(
    tiny_llama: Path, tmp_path: Path, seeds: list[int], method: str
) -> tuple[list[str], list[Path]]:
    """Tokens, statistics, baseline and one selection per seed of the tiny Llama; returns the
    options of ``evaluate --method <method>`` but seeds, fractions and outputs, and the
    selections."""
    ids = np.random.default_rng(5).integers(4, 60, size=(6, 12))
    tokens = tmp_path / "eval.arrow"
    write_model_tokens(tokens, sequences_table(ids), tiny_llama)
    model = ["--model-source", str(tiny_llama), "--task", "causal-lm"]
    runtime = ["--tokens", str(tokens), "--device", "cpu", "--batch-size", "4"]
    stats, baseline = tmp_path / "stats.zarr", tmp_path / "baseline.json"
    main(["statistics", *model, *runtime, "--bin-width", "0.05", "--out", str(stats)])
    main(["baseline", *model, *runtime, "--model-name", "tiny", "--out", str(baseline)])
    selections = [tmp_path / f"seed{seed}.zarr" for seed in seeds]
    for seed, selection in zip(seeds, selections, strict=True):
        main(["select", *model, "--seed", str(seed), "--out", str(selection)])
    common = [*model, *runtime, "--model-name", "tiny", "--method", method, "--stats", str(stats),
              "--baseline", str(baseline)]  # fmt: skip
    return common, selections


@pytest.mark.parametrize("method", ["zero", "peak"])
def test_one_job_of_many_fractions_equals_one_job_per_fraction(tiny_llama, tmp_path, method):
    """The model is loaded once and the fold-in undone between fractions: same bits as fresh."""
    common, (selection,) = seed_chain(tiny_llama, tmp_path, [0], method)
    common += ["--seed", "0", "--selection", str(selection)]

    fractions = ["0.00", "0.30", "0.70", "1.00"]
    together = [tmp_path / f"together{f}.json" for f in fractions]
    main(["evaluate", *common, "--fraction", *fractions, "--out", *map(str, together)])
    for fraction, joint in zip(fractions, together, strict=True):
        alone = tmp_path / f"alone{fraction}.json"
        main(["evaluate", *common, "--fraction", fraction, "--out", str(alone)])
        assert read_json(joint) == read_json(alone)
    assert read_json(together[0])["top1"] == read_json(tmp_path / "baseline.json")["top1"]
    assert len({read_json(path)["loss"] for path in together}) == len(fractions)


def test_fractions_and_outputs_must_pair_up(tiny_llama, tmp_path, capsys):
    args = ["evaluate", "--model-name", "tiny", "--model-source", str(tiny_llama), "--task",
            "causal-lm", "--tokens",
            "unused.arrow", "--method", "zero", "--seed", "0", "--selection", "unused.zarr",
            "--fraction", "0.1", "0.2", "--out", str(tmp_path / "a.json")]  # fmt: skip
    assert main(args) == 2
    assert "evaluate: error: --fraction and --out must pair up: got 2 fractions and 1 output" in (
        capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


def test_one_job_of_many_seeds_writes_the_bytes_of_one_job_per_seed(
    tiny_llama, tmp_path, monkeypatch
):
    """Seeds in one command (the model loaded once, outputs seed-major) write what each seed's
    own command writes, byte for byte; fraction 0 reuses the baseline."""
    from neuron_ablation import evaluation

    seeds, fractions = [3, 4, 5], ["0.00", "0.50", "0.90"]
    common, selections = seed_chain(tiny_llama, tmp_path, seeds, "peak")
    loads = []
    load = evaluation._load
    monkeypatch.setattr(evaluation, "_load", lambda job: loads.append(job.seed) or load(job))
    together = [tmp_path / "together" / f"{s}_{f}.json" for s in seeds for f in fractions]
    args = ["evaluate", *common, "--seed", *map(str, seeds), "--fraction", *fractions,
            "--selection", *map(str, selections), "--out", *map(str, together)]  # fmt: skip
    assert main(args) == 0
    assert loads == [3]
    for seed, selection in zip(seeds, selections, strict=True):
        alone = [tmp_path / "alone" / f"{seed}_{f}.json" for f in fractions]
        main(["evaluate", *common, "--seed", str(seed), "--fraction", *fractions,
              "--selection", str(selection), "--out", *map(str, alone)])  # fmt: skip
        for path in alone:
            assert (tmp_path / "together" / path.name).read_bytes() == path.read_bytes()
    assert len({read_json(p)["loss"] for p in together if "0.90" in p.name}) == len(seeds)
    assert {read_json(p)["seed"] for p in together} == set(seeds)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"--selection": ["a.zarr"]},
            "--seed and --selection must pair up: got 2 seeds and 1 selections",
        ),
        (
            {"--out": ["a.json", "b.json", "c.json"]},
            "--out needs one path per (seed, fraction), seed-major: got 2 seeds x 2 fractions "
            "and 3 output paths",
        ),
        ({"--seed": ["1", "1"]}, "--seed lists a seed twice: [1, 1]"),
        (
            {"--optimal": ["o.zarr"]},
            "--optimal holds the constants of one seed: give one --seed with it",
        ),
    ],
)
def test_seeds_selections_and_outputs_must_pair_up(tiny_llama, tmp_path, capsys, change, message):
    options = {"--seed": ["1", "2"], "--selection": ["a.zarr", "b.zarr"], "--fraction":
               ["0.5", "0.9"], "--out": [str(tmp_path / f"{n}.json") for n in "abcd"]}  # fmt: skip
    options |= change
    args = ["evaluate", "--model-name", "tiny", "--model-source", str(tiny_llama), "--task",
            "causal-lm", "--tokens", "unused.arrow", "--method", "zero"]  # fmt: skip
    args += [word for option, values in options.items() for word in (option, *values)]
    assert main(args) == 2
    assert f"evaluate: error: {message}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("architecture", ["roberta", "bert"])
def test_masked_lm_head_runs_on_scored_positions_only(tmp_path, architecture, monkeypatch):
    from neuron_ablation import scoring
    from neuron_ablation.architectures import vocabulary_head
    from neuron_ablation.masking import IGNORE
    from tests.helpers.tiny_models import save_masked_lm

    model = load(save_masked_lm(tmp_path / architecture, architecture), architecture)
    rng = np.random.default_rng(3)
    ids = rng.integers(4, 60, size=(5, 12))
    labels = np.where(rng.random(ids.shape) < 0.2, ids, IGNORE)
    labels[2] = IGNORE  # a batch row with nothing scored
    columns = {"input_ids": ids, "labels": labels}
    seen = []
    handle = vocabulary_head(model).register_forward_hook(
        lambda _m, args, _out: seen.append(tuple(args[0].shape))
    )
    fast = evaluate(model, columns, "masked-lm", batch_size=2)
    handle.remove()
    positions = sum(math.prod(shape[:-1]) for shape in seen)  # the hidden size is last
    assert positions == int((labels != IGNORE).sum()) == fast["n_tokens"]
    monkeypatch.setattr(scoring, "vocabulary_head", lambda _model: None)  # full logits
    full = evaluate(model, columns, "masked-lm", batch_size=2)
    assert fast["top1"] == full["top1"] and fast["n_tokens"] == full["n_tokens"]
    assert math.isclose(fast["loss"], full["loss"], rel_tol=1e-6)


def test_sweep_fractions_score_the_first_sequences_focus_fractions_all(tiny_llama, tmp_path):
    ids = np.random.default_rng(4).integers(4, 60, size=(6, 12))
    tokens = tmp_path / "eval.arrow"
    write_model_tokens(tokens, sequences_table(ids), tiny_llama)
    model = ["--model-source", str(tiny_llama), "--task", "causal-lm"]
    selection = tmp_path / "seed0.zarr"
    main(["select", *model, "--seed", "0", "--out", str(selection)])
    outs = [tmp_path / "f03.json", tmp_path / "f05.json"]
    main(["evaluate", *model, "--model-name", "tiny", "--tokens", str(tokens), "--device", "cpu",
          "--method", "zero",
          "--seed", "0", "--selection", str(selection), "--fraction", "0.3", "0.5",
          "--sweep-items", "2", "--focus", "0.5", "--out", *map(str, outs)])  # fmt: skip
    sweep, focus = (read_json(p) for p in outs)
    assert (sweep["n_tokens"], len(sweep["seq_n"])) == (2 * 11, 2)
    assert (focus["n_tokens"], len(focus["seq_n"])) == (6 * 11, 6)
    # The sweep's sequences are the focus evaluation's first ones, scored the same way.
    full = tmp_path / "full03.json"
    main(["evaluate", *model, "--model-name", "tiny", "--tokens", str(tokens), "--device", "cpu",
          "--method", "zero",
          "--seed", "0", "--selection", str(selection), "--fraction", "0.3",
          "--out", str(full)])  # fmt: skip
    assert read_json(full)["seq_loss_sum"][:2] == sweep["seq_loss_sum"]


def test_the_baseline_of_a_sweep_scores_the_sweep_rows_too(tiny_llama, tmp_path):
    """``--sweep-items``: the baseline records the clean model on the first rows as well (what a
    clean evaluation of those rows alone gives), and fraction 0, a sweep fraction, reuses that."""
    ids = np.random.default_rng(5).integers(4, 60, size=(6, 12))
    model = ["--model-source", str(tiny_llama), "--task", "causal-lm", "--device", "cpu",
             "--batch-size", "4", "--model-name", "tiny"]  # fmt: skip
    for name, rows in (("eval", ids), ("first", ids[:2])):
        write_model_tokens(tmp_path / f"{name}.arrow", sequences_table(rows), tiny_llama)
    tokens = ["--tokens", str(tmp_path / "eval.arrow")]
    main(["baseline", *model, *tokens, "--sweep-items", "2", "--out", str(tmp_path / "b.json")])
    main(["baseline", *model, "--tokens", str(tmp_path / "first.arrow"),
          "--out", str(tmp_path / "first.json")])  # fmt: skip
    main(["baseline", *model, *tokens, "--out", str(tmp_path / "plain.json")])
    baseline, first, plain = (read_json(tmp_path / f"{n}.json") for n in ("b", "first", "plain"))
    sweep = baseline.pop("sweep")
    assert (sweep["first_items"], sweep["n_items"], sweep["n_tokens"]) == (2, 2, 2 * 11)
    assert sweep["n_tokens"] == first["n_tokens"]
    assert sweep["top1"] == first["top1"]
    assert math.isclose(sweep["loss"], first["loss"], rel_tol=1e-9)
    # The whole split's figures are those of a run without a sweep, under the same keys.
    assert set(plain) == set(baseline)
    assert [baseline[k] for k in ("top1", "loss", "n_tokens")] == [
        plain[k] for k in ("top1", "loss", "n_tokens")
    ]
    assert plain["provenance"]["settings"] == {"dtype": "float32"}

    main(["select", "--model-source", str(tiny_llama), "--task", "causal-lm", "--seed", "0",
          "--out", str(tmp_path / "seed0.zarr")])  # fmt: skip
    outs = [tmp_path / "f00.json", tmp_path / "f05.json"]
    main(["evaluate", *model, *tokens, "--method", "zero", "--seed", "0",
          "--selection", str(tmp_path / "seed0.zarr"), "--fraction", "0.0", "0.5",
          "--sweep-items", "2", "--focus", "0.5", "--baseline", str(tmp_path / "b.json"),
          "--out", *map(str, outs)])  # fmt: skip
    clean, focus = (read_json(p) for p in outs)
    assert (clean["n_tokens"], clean["top1"], clean["loss"]) == (
        sweep["n_tokens"], sweep["top1"], sweep["loss"],
    )  # fmt: skip
    assert np.allclose(clean["seq_loss_sum"], first["seq_loss_sum"], rtol=1e-9)
    assert "sweep" not in clean
    assert focus["n_tokens"] == plain["n_tokens"]


@pytest.mark.parametrize("architecture", ["llama", "mistral", "opt", "gpt2", "gpt_neox"])
def test_causal_head_runs_in_chunks_and_scores_as_the_full_logits(
    tmp_path, architecture, monkeypatch
):
    from neuron_ablation import scoring
    from neuron_ablation.architectures import vocabulary_head
    from tests.helpers.tiny_models import save_causal_lm

    model = load(save_causal_lm(tmp_path / architecture, architecture), architecture)
    ids = np.random.default_rng(5).integers(4, 60, size=(5, 12))
    vocab, _ = model.get_output_embeddings().weight.shape
    monkeypatch.setattr(scoring, "LOGITS_BYTES_PER_CHUNK", 7 * vocab * 4)  # 7 rows
    seen = []
    handle = vocabulary_head(model).register_forward_hook(
        lambda _m, args, _out: seen.append(math.prod(args[0].shape[:-1]))
    )
    chunked = evaluate(model, {"input_ids": ids}, "causal-lm", batch_size=2)
    handle.remove()
    # Per batch, the model hands its head no positions, then 7 at most per chunk.
    assert seen == [0, 7, 7, 7, 1] * 2 + [0, 7, 4]
    monkeypatch.setattr(scoring, "vocabulary_head", lambda _model: None)  # the model's logits
    full = evaluate(model, {"input_ids": ids}, "causal-lm", batch_size=2)
    assert chunked["seq_correct"] == full["seq_correct"] and chunked["seq_n"] == full["seq_n"]
    np.testing.assert_allclose(chunked["seq_loss_sum"], full["seq_loss_sum"], rtol=1e-6)
