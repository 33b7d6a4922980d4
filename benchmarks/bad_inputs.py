"""Bad inputs and faults against the whole workflow, on tiny models: where each stops, with what
message and exit code, and what it leaves behind. Prints a markdown table.

    python -m benchmarks.bad_inputs              # every case (a few minutes on 2 cores)
    python -m benchmarks.bad_inputs -k csv -k kill   # only cases whose name holds a word

(from the repository root, with ``-m``: it imports the tests' helpers as ``tests.helpers``).

Each case runs ``snakemake --cores 2`` in a fresh directory (a few call the CLI a job would
run), on a tiny random Llama / ViT of the real classes (tests/helpers/tiny_models.py) and a small
corpus. Columns:

- *stops at*: "config check" (schema and cross-references, before the job graph), "pre-flight"
  (models, datasets and this machine, before any job), "job <rule>", "lock" (Snakemake refuses
  to run), "command ..." (a job's command run by itself, e.g. on a full disk), "completed";
- *files left*: artifacts under results/ (logs and benchmarks excluded) and temporaries of
  interrupted writes (``.name.id.tmp``), which no rerun reads and the next write removes.

Kills (``kill -9``) hit a job at the moment it commits its artifact (see
tests/helpers/faults.py); after each, the same command is run again and compared byte for byte
with a clean run.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from tests.helpers.faults import (
    artifact_digests,
    environment,
    kill_snakemake_during,
    killing_cli_bin,
    leftover_temporaries,
    processes_with,
    snakemake_command,
    wait_for,
)
from tests.helpers.tiny_models import corpus, poison_weight, save_causal_lm, save_vit, write_jsonl

TARGET = "results/tables/table2.md"
CLOSED_HUB = "http://127.0.0.1:9"  # nothing listens: "the hub cannot be reached", at once
SENTINEL = "PWNED"
HOSTILE = f"a b 'q' \"dq\" $(touch {SENTINEL}) ; `touch {SENTINEL}` $HOME é 模型"


@dataclass
class Outcome:
    returncode: int
    output: str
    workdir: Path
    note: str = ""
    left: str | None = None
    """Files left, when taken before a rerun (else read from the workdir at the end)."""
    stage: str | None = None
    """Where it stopped, for a case that is not one Snakemake run (e.g. ``verify``)."""
    text: str | None = None
    """Its message, for such a case."""


class Workspace:
    """Tiny models and data made once; one fresh directory per case."""

    def __init__(self, root: Path):
        self.root = root
        self.llama = save_causal_lm(root / "models/llama", "llama")
        self.vit = save_vit(root / "models/vit")
        (root / "data").mkdir()
        self.corpus = write_jsonl(root / "data/corpus.jsonl", corpus())
        self.bin = killing_cli_bin(root / "bin")
        self._count = 0
        self._reference: dict[str, str] | None = None
        self.reference_dir: Path | None = None

    def case_dir(self, name: str) -> Path:
        self._count += 1
        path = self.root / "cases" / f"{self._count:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
        path.mkdir(parents=True)
        return path

    def config(self) -> dict:
        """A good config: one method that needs statistics, one seed, two fractions."""
        return {
            "models": {
                "tiny": {
                    "source": str(self.llama),
                    "task": "causal-lm",
                    "dataset": "corpus",
                    "seq_len": 16,
                    "batch_size": 4,
                    "device": "cpu",
                }
            },
            "datasets": {"corpus": {"source": str(self.corpus), "eval_share": 0.25}},
            "methods": ["mean"],
            "seeds": [0],
            "fractions": [0.5, 1.0],
            "stats": {"n_tokens": 512, "bin_width": 0.01, "range": [-4.0, 4.0]},
            "eval": {"n_tokens": 128},
        }

    def copy_model(self, workdir: Path, name: str = "model", source: Path | None = None) -> Path:
        return shutil.copytree(source or self.llama, workdir / name)

    def snakemake(
        self,
        workdir: Path,
        config: dict | str,
        *args: str,
        env: dict | None = None,
    ) -> Outcome:
        configfile = workdir / "config.yaml"
        text = config if isinstance(config, str) else yaml.safe_dump(config, allow_unicode=True)
        configfile.write_text(text, encoding="utf-8")
        args = args or ("--cores", "2", TARGET)
        result = subprocess.run(
            snakemake_command(workdir, configfile, *args),
            capture_output=True,
            text=True,
            env=env or environment(HF_ENDPOINT=CLOSED_HUB),
        )
        return Outcome(result.returncode, result.stdout + result.stderr, workdir)

    def reference(self) -> dict[str, str]:
        """Artifacts of one clean run of the good config (computed once)."""
        if self._reference is None:
            outcome = self.snakemake(self.case_dir("reference"), self.config())
            assert outcome.returncode == 0, outcome.output[-3000:]
            self.reference_dir = outcome.workdir / "results"
            self._reference = artifact_digests(self.reference_dir)
        return self._reference


# ----------------------------------------------------------------------------- cases

CASES: dict[str, Callable[[Workspace, Path], Outcome]] = {}


def case(name: str):
    def register(function):
        CASES[name] = function
        return function

    return register


def config_case(name: str, mutate: Callable[[dict], None]) -> None:
    def run(ws: Workspace, workdir: Path) -> Outcome:
        config = ws.config()
        mutate(config)
        return ws.snakemake(workdir, config)

    CASES[name] = run


def model_config(config: dict, **changes) -> None:
    config["models"]["tiny"].update(changes)


config_case("unknown method", lambda c: c.update(methods=["zero", "median"]))
config_case("fraction 1.5", lambda c: c.update(fractions=[0.5, 1.5]))
config_case("fraction with three decimals", lambda c: c.update(fractions=[0.125]))
config_case("duplicate fractions", lambda c: c.update(fractions=[0.5, 0.5]))
config_case('seed "a"', lambda c: c.update(seeds=["a"]))
config_case("negative seed", lambda c: c.update(seeds=[-1]))
config_case("bin_width 0", lambda c: c["stats"].update(bin_width=0))
config_case("reversed range", lambda c: c["stats"].update(range=[4.0, -4.0]))
config_case("seq_len 1", lambda c: model_config(c, seq_len=1))
config_case("batch_size 0", lambda c: model_config(c, batch_size=0))
config_case("dtype float64", lambda c: model_config(c, dtype="float64"))
config_case("device gpu0", lambda c: model_config(c, device="gpu0"))
config_case("unknown task", lambda c: model_config(c, task="seq2seq"))
config_case("model name with /", lambda c: c.update(models={"a/b": c["models"]["tiny"]}))
config_case("model name ..", lambda c: c.update(models={"..": c["models"]["tiny"]}))
config_case("model name with a space", lambda c: c.update(models={"a b": c["models"]["tiny"]}))
config_case("undefined dataset key", lambda c: model_config(c, dataset="pile"))
config_case("unknown top-level key", lambda c: c.update(colour="red"))
config_case("unknown embedded model", lambda c: model_config(c, source="embedded:gpt5"))
config_case(
    "missing local dataset file",
    lambda c: c["datasets"]["corpus"].update(source="./missing.jsonl"),
)


@case("text method on a vision model")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    model_config(config, source=str(ws.vit), task="image-classification")
    config["methods"] = ["zero", "resample-chars"]
    return ws.snakemake(workdir, config)


@case("YAML syntax error")
def _(ws: Workspace, workdir: Path) -> Outcome:
    return ws.snakemake(workdir, "models:\n  tiny: {source: [unclosed\n")


@case("empty config file")
def _(ws: Workspace, workdir: Path) -> Outcome:
    return ws.snakemake(workdir, "")


# --- models (pre-flight)


def broken_model_case(name: str, damage: Callable[[Path], None], **changes) -> None:
    def run(ws: Workspace, workdir: Path) -> Outcome:
        model = ws.copy_model(workdir)
        damage(model)
        config = ws.config()
        model_config(config, source=str(model), **changes)
        return ws.snakemake(workdir, config)

    CASES[name] = run


def set_model_type(model: Path, model_type: str = "t5") -> None:
    path = model / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"model_type": model_type}))


def truncate(model: Path) -> None:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4096])


def remove(*names: str) -> Callable[[Path], None]:
    def damage(model: Path) -> None:
        for name in names:
            (model / name).unlink(missing_ok=True)

    return damage


def untouched(model: Path) -> None:
    return None


broken_model_case("unsupported model_type (t5)", set_model_type)
broken_model_case("llama configured as masked-lm", untouched, task="masked-lm")
broken_model_case("truncated model.safetensors", truncate)
broken_model_case("seq_len 512 > 128 positions", untouched, seq_len=512)
broken_model_case("device cuda on a machine without CUDA", untouched, device="cuda")
broken_model_case("model directory without config.json", remove("config.json"))
broken_model_case(
    "model directory without tokenizer", remove("tokenizer.json", "tokenizer_config.json")
)
broken_model_case("model directory without weights", remove("model.safetensors"))


@case("resample.seq_len 200 > 128 positions")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    config["methods"] = ["mean", "resample-tokens"]
    config["resample"] = {"seq_len": 200}
    return ws.snakemake(workdir, config)


@case("model source is a file")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    model_config(config, source=str(ws.llama / "model.safetensors"))
    return ws.snakemake(workdir, config)


@case("hub model id, hub unreachable")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    model_config(config, source="nobody/no-such-model-xyz")
    return ws.snakemake(workdir, config)


@case("model path that does not exist (no ./)")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    model_config(config, source="my models/tiny")
    return ws.snakemake(workdir, config)


@case("histograms of 2e9 bins per neuron")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    config["stats"].update(bin_width=1e-7, range=[-100.0, 100.0])
    return ws.snakemake(workdir, config)


# --- datasets (pre-flight)


def dataset_case(name: str, write: Callable[[Path], Path], **settings) -> None:
    def run(ws: Workspace, workdir: Path) -> Outcome:
        config = ws.config()
        config["datasets"]["corpus"].update(source=str(write(workdir)), **settings)
        return ws.snakemake(workdir, config)

    CASES[name] = run


def text_file(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def write(workdir: Path) -> Path:
        path = workdir / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write


def jsonl(rows: list[dict], extra: str = "") -> str:
    return "".join(json.dumps(row) + "\n" for row in rows) + extra


GARBAGE = np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes()

dataset_case("empty text file", text_file("empty.txt", ""))
dataset_case("binary garbage as .txt", text_file("garbage.txt", GARBAGE))
dataset_case("text file far too short", text_file("short.txt", "w1 w2 w3\n\nw4 w5\n"))
dataset_case(
    "jsonl a little too short (tokenizer count)",
    text_file("borderline.jsonl", jsonl([{"text": t} for t in corpus(60, 8)])),
)
dataset_case(
    "jsonl without the text field",
    text_file("content.jsonl", jsonl([{"content": t} for t in corpus()])),
)
dataset_case(
    "jsonl with a broken line",
    text_file("broken.jsonl", jsonl([{"text": t} for t in corpus()], '{"text": "unterminated\n')),
)
dataset_case("CSV file", text_file("corpus.csv", "text\n" + "\n".join(corpus())))


@case("text_field set to a field the rows lack")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    config["datasets"]["corpus"]["text_field"] = "body"
    return ws.snakemake(workdir, config)


@case("folder given to a text model")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    config["datasets"]["corpus"]["source"] = str(workdir)
    return ws.snakemake(workdir, config)


@case("parquet without the text column")
def _(ws: Workspace, workdir: Path) -> Outcome:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = workdir / "corpus.parquet"
    pq.write_table(pa.table({"body": corpus()}), path)
    config = ws.config()
    config["datasets"]["corpus"]["source"] = str(path)
    return ws.snakemake(workdir, config)


@case("hub dataset id, hub unreachable")
def _(ws: Workspace, workdir: Path) -> Outcome:
    config = ws.config()
    config["datasets"]["corpus"]["source"] = "nobody/no-such-dataset-xyz"
    return ws.snakemake(workdir, config)


@case("image folder with too few images")
def _(ws: Workspace, workdir: Path) -> Outcome:
    from PIL import Image

    for label in ("a", "b"):
        (workdir / "images" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), i).save(workdir / "images" / label / f"{i}.png")
    config = ws.config()
    model_config(config, source=str(ws.vit), task="image-classification")
    config["datasets"]["corpus"]["source"] = str(workdir / "images")
    config["stats"]["n_images"], config["eval"]["n_images"] = 50, 10
    return ws.snakemake(workdir, config)


# --- shell safety


@case("shell syntax in every name (model, data, text_field, key)")
def _(ws: Workspace, workdir: Path) -> Outcome:
    model = ws.copy_model(workdir, f"model {HOSTILE}")
    text_field = f"te xt {HOSTILE}"
    dataset = workdir / f"data {HOSTILE}.jsonl"
    dataset.write_text(jsonl_unicode([{text_field: t} for t in corpus()]), encoding="utf-8")
    key = f"corpus {HOSTILE}"
    config = ws.config()
    model_config(config, source=str(model), dataset=key)
    config["datasets"] = {key: {"source": str(dataset), "text_field": text_field}}
    outcome = ws.snakemake(workdir, config)
    executed = list(workdir.rglob(SENTINEL))
    outcome.note = f"sentinel files created: {len(executed)}"
    return outcome


def jsonl_unicode(rows: list[dict]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


# --- faults


def killed_case(stage: str) -> Callable[[Workspace, Path], Outcome]:
    def run(ws: Workspace, workdir: Path) -> Outcome:
        env = environment(kill_at=stage, bin_dir=ws.bin, HF_ENDPOINT=CLOSED_HUB)
        killed = ws.snakemake(workdir, ws.config(), env=env)
        killed.left = files_left(workdir)
        rerun = ws.snakemake(workdir, ws.config())
        same = artifact_digests(workdir / "results") == ws.reference()
        killed.note = (
            f"the job was killed (SIGKILL); rerun (same command): exit {rerun.returncode}, "
            + ("byte-identical to a clean run" if same else "DIFFERENT from a clean run")
        )
        return killed

    return run


CASES["kill -9 statistics job at commit"] = killed_case("statistics")
CASES["kill -9 evaluation job at commit"] = killed_case("evaluate")
CASES["kill -9 aggregation job at commit"] = killed_case("aggregate")


@case("kill -9 of snakemake during statistics")
def _(ws: Workspace, workdir: Path) -> Outcome:
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(ws.config()))
    command = snakemake_command(workdir, configfile, "--cores", "2", TARGET)
    kill_snakemake_during(command, environment(), job_words=("statistics",))
    refused = ws.snakemake(workdir, ws.config())
    refused.left = files_left(workdir)
    unlock = ws.snakemake(workdir, ws.config(), "--unlock")
    rerun = ws.snakemake(workdir, ws.config())
    same = artifact_digests(workdir / "results") == ws.reference()
    refused.note = (
        f"then --unlock (exit {unlock.returncode}) and the same command: exit "
        f"{rerun.returncode}, " + ("byte-identical to a clean run" if same else "DIFFERENT")
    )
    return refused


def disk_full_case(stage: str) -> Callable[[Workspace, Path], Outcome]:
    """The job's command with RLIMIT_FSIZE below its largest output file (EFBIG mid-write)."""

    def run(ws: Workspace, workdir: Path) -> Outcome:
        ws.reference()
        reference = ws.reference_dir
        if stage == "statistics":
            done, out = reference / "tiny/stats.zarr", workdir / "results/tiny/stats.zarr"
            args = ["statistics", f"--model-source={ws.llama}", "--task", "causal-lm"]
            args += ["--tokens", str(reference / "tiny/tokens/stats.arrow"), "--device", "cpu"]
            args += ["--bin-width", "0.01", "--range", "-4", "4", "--out", str(out)]
        else:
            done, out = reference / "tables/ablation.csv", workdir / "results/tables"
            evals = sorted(str(p) for p in reference.glob("tiny/eval/mean/seed0/*.json"))
            args = ["aggregate", "--tables", str(out), *evals]
        limit = max(p.stat().st_size for p in [done, *done.rglob("*")] if p.is_file()) // 2
        (workdir / "results").mkdir()
        result = subprocess.run(
            [sys.executable, "-m", "neuron_ablation.cli", *args],
            capture_output=True,
            text=True,
            env=environment(),
            cwd=workdir,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
        )
        outcome = Outcome(result.returncode, result.stdout + result.stderr, workdir)
        outcome.note = f"file size limit {limit:,} bytes (ulimit -f)"
        return outcome

    return run


CASES["disk full while writing statistics"] = disk_full_case("statistics")
CASES["disk full while writing tables"] = disk_full_case("aggregate")


# --- issue 28 (part B): numbers, corner configs, architecture rules, tokenizer, encoding, lock
# One block, added together; each row stops where the README / docs/troubleshooting-errors.md say.

config_case("one resampling method only", lambda c: c.update(methods=["resample-tokens"]))


def poisoned_model_case(name: str, parameter: str, value: float) -> None:
    def run(ws: Workspace, workdir: Path) -> Outcome:
        model = poison_weight(ws.copy_model(workdir), parameter, value)
        config = ws.config()
        model_config(config, source=str(model))
        return ws.snakemake(workdir, config)

    CASES[name] = run


poisoned_model_case(
    "one NaN in a v_proj weight", "model.layers.0.self_attn.v_proj.weight", float("nan")
)
poisoned_model_case(
    "one +inf in an o_proj weight (last layer)",
    "model.layers.1.self_attn.o_proj.weight",
    float("inf"),
)


def edit_json(path: Path, drop: tuple[str, ...] = (), **changes) -> None:
    content = json.loads(path.read_text()) | changes
    path.write_text(json.dumps({k: v for k, v in content.items() if k not in drop}))


broken_model_case(
    "num_attention_heads 5 with hidden_size 32",
    lambda model: edit_json(model / "config.json", num_attention_heads=5),
)
broken_model_case(
    "tokenizer without EOS",
    lambda model: edit_json(model / "tokenizer_config.json", drop=("eos_token",)),
)

LATIN1_OFFSET = 466_278


def latin1_jsonl(workdir: Path) -> Path:
    """A UTF-8 .jsonl corpus with one latin-1 byte (é = 0xE9) at byte LATIN1_OFFSET."""
    data = jsonl([{"text": t} for t in corpus(3000)]).encode("utf-8")
    path = workdir / "latin1.jsonl"
    path.write_bytes(data[:LATIN1_OFFSET] + b"\xe9" + data[LATIN1_OFFSET + 1 :])
    return path


dataset_case(f"a latin-1 byte at offset {LATIN1_OFFSET:,}", latin1_jsonl)


@case("Directory cannot be locked while another run is live")
def _(ws: Workspace, workdir: Path) -> Outcome:
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(ws.config()))
    command = snakemake_command(workdir, configfile, "--cores", "2", TARGET)
    live = subprocess.Popen(
        command, env=environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: processes_with(live.pid, "statistics"), 300)
        second = ws.snakemake(workdir, ws.config())
        listed = subprocess.run(["pgrep", "-af", "snakemake"], capture_output=True, text=True)
        seen = any(line.split()[0] == str(live.pid) for line in listed.stdout.splitlines())
    finally:
        live_exit = live.wait()
    second.note = (
        f"`pgrep -af snakemake` {'lists' if seen else 'does NOT list'} the live run, as the "
        f"README's lock row says to check before --unlock; the live run then finished (exit "
        f"{live_exit})"
    )
    return second


# --- provenance: artifacts of other inputs put in place, inputs changed or deleted
# (docs/provenance.md)


def run_verify(workdir: Path) -> subprocess.CompletedProcess:
    """`neuron-ablation verify` in ``workdir`` (its results/)."""
    return subprocess.run(
        [sys.executable, "-m", "neuron_ablation.cli", "verify"],
        capture_output=True,
        text=True,
        env=environment(),
        cwd=workdir,
    )


def provenance_run(ws: Workspace, workdir: Path, source: Path) -> Outcome:
    """The good config on ``source`` (a copy of a model) in ``workdir``, run to the end."""
    config = ws.config()
    model_config(config, source=str(source))
    outcome = ws.snakemake(workdir, config)
    assert outcome.returncode == 0, outcome.output[-3000:]
    return outcome


def other_model_stats(ws: Workspace, name: str, **model_options) -> Path:
    """The statistics store of another tiny Llama (seed 7), from a run of its own."""
    workdir = ws.case_dir(f"other model {name}")
    model = save_causal_lm(workdir / "model", "llama", seed=7, **model_options)
    provenance_run(ws, workdir, model)
    return workdir / "results/tiny/stats.zarr"


def planned_rules(dry_run_output: str) -> str:
    """``rule×count`` of a ``snakemake -n`` listing (its Job stats table)."""
    stats = dry_run_output.split("Job stats:", 1)[-1].split("\n\n", 1)[0]
    rows = re.findall(r"^(\w+)\s+(\d+)$", stats, flags=re.MULTILINE)
    return ", ".join(f"{rule}×{n}" if n != "1" else rule for rule, n in rows if rule != "total")


@case("weights replaced in place (cp other/model.safetensors model/)")
def _(ws: Workspace, workdir: Path) -> Outcome:
    model = ws.copy_model(workdir)
    provenance_run(ws, workdir, model)
    other = save_causal_lm(workdir / "other", "llama", seed=7)
    shutil.copyfile(other / "model.safetensors", model / "model.safetensors")
    config = ws.config()
    model_config(config, source=str(model))
    dry = ws.snakemake(workdir, config, "-n", TARGET)
    rerun = ws.snakemake(workdir, config)
    rerun.note = f"`snakemake -n` after the overwrite plans {planned_rules(dry.output)}"
    return rerun


def stats_swap_case(ws: Workspace, workdir: Path, **model_options) -> Outcome:
    """The good run, then another model's stats.zarr in place of its own, then the same run."""
    other = other_model_stats(ws, workdir.name, **model_options)
    model = ws.copy_model(workdir)
    provenance_run(ws, workdir, model)
    stats = workdir / "results/tiny/stats.zarr"
    shutil.rmtree(stats)
    shutil.copytree(other, stats, copy_function=shutil.copyfile)  # cp -r: new file times
    verify = run_verify(workdir)
    stale = [line.split()[1].rstrip(":") for line in verify.stdout.splitlines()
             if line.startswith("STALE")]  # fmt: skip
    config = ws.config()
    model_config(config, source=str(model))
    outcome = ws.snakemake(workdir, config, "--cores", "2", "--keep-going", TARGET)
    job_error = re.search(r"neuron-ablation \w+: error: (.+)", outcome.output)
    if job_error:  # digests shortened, so the table cell keeps the note
        outcome.text = re.sub(r"(sha256:[0-9a-f]{12})[0-9a-f]+", r"\1…", job_error.group(1))
    outcome.note = (
        f"`neuron-ablation verify` before the rerun: exit {verify.returncode}, {len(stale)} "
        f"stale, stats.zarr {'among them' if str(stats.relative_to(workdir)) in stale else 'not'}"
    )
    return outcome


@case("another model's stats.zarr of the same shape put in place")
def _(ws: Workspace, workdir: Path) -> Outcome:
    return stats_swap_case(ws, workdir)


@case("another model's stats.zarr with 3 layers under a 2-layer model")
def _(ws: Workspace, workdir: Path) -> Outcome:
    return stats_swap_case(ws, workdir, layers=3)


@case("verify after deleting one evaluation JSON")
def _(ws: Workspace, workdir: Path) -> Outcome:
    ws.reference()
    shutil.copytree(ws.reference_dir, workdir / "results", symlinks=True)
    (workdir / "results/tiny/eval/mean/seed0/frac0.50.json").unlink()
    result = run_verify(workdir)
    lines = result.stdout.splitlines()
    outcome = Outcome(result.returncode, result.stdout + result.stderr, workdir)
    outcome.stage = "command `neuron-ablation verify`"
    outcome.text = " ".join(line.strip() for line in lines if line.startswith(("MISSING", "  r")))
    return outcome


# ----------------------------------------------------------------------------- the table


def stops_at(outcome: Outcome) -> str:
    if outcome.stage is not None:
        return outcome.stage
    output = outcome.output
    if outcome.returncode == 0:
        return "completed"
    if "Error in rule" in output:
        return "job " + re.findall(r"Error in rule (\w+)", output)[0]
    if "pre-flight check failed" in output:
        return "pre-flight"
    if "cannot be locked" in output or "LockException" in output:
        return "lock"
    command = re.search(r"neuron-ablation ([\w-]+): error:", output)
    if command:  # a job's command run by itself: its one-paragraph error
        return f"command `neuron-ablation {command.group(1)}`"
    if "neuron_ablation.cli" in output or "Traceback" in output:
        return "CLI (the job's command)"
    return "config check"


MESSAGE_PATTERNS = (
    r"pre-flight check failed, nothing was run:\n\s*(.+)",
    r"invalid config:\n\s*(.+)",
    r"neuron-ablation [\w-]+: error: (.+)",  # a job's one-paragraph error, printed with its log
    r"^(\w*Error: .+)$",
    r"^(\w*Exception: .+)$",
    r"^(Error: .+)$",
)


def message(outcome: Outcome) -> str:
    if outcome.text is not None:
        return outcome.text
    if outcome.returncode == 0:
        return "the run completed"
    validation = re.search(r"^ValidationError: (.+)$", outcome.output, flags=re.MULTILINE)
    instance = re.search(r"^On instance(\S*):$", outcome.output, flags=re.MULTILINE)
    if validation and instance:
        field = re.sub(r"\['([^']*)'\]", r".\1", instance.group(1)).lstrip(".")
        return f"{field}: {validation.group(1)}" if field else validation.group(1)
    for pattern in MESSAGE_PATTERNS:
        found = re.findall(pattern, outcome.output, flags=re.MULTILINE)
        if found:
            return found[-1 if pattern.startswith("^") else 0].strip()
    lines = [line for line in outcome.output.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def files_left(workdir: Path) -> str:
    """Complete artifacts (of jobs that finished) and temporaries of interrupted writes."""
    results = workdir / "results"
    if not results.exists():
        return "none"
    temporaries = [t for t in leftover_temporaries(results) if ".tmp/" not in t]
    artifacts = [
        a for a in artifact_digests(results) if ".tmp/" not in a and not a.endswith(".tmp")
    ]
    parts = [f"{len(artifacts)} complete artifacts"] if artifacts else []
    if temporaries:
        parts.append(f"temporaries (never read): {', '.join(temporaries)}")
    return "; ".join(parts) or "none"


def cell(text: str, width: int = 220) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", action="append", default=[], help="run cases whose name holds this")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    chosen = {n: f for n, f in CASES.items() if not args.k or any(k in n for k in args.k)}
    root = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    started = time.perf_counter()
    rows = []
    try:
        ws = Workspace(root)
        for number, (name, run) in enumerate(chosen.items(), start=1):
            print(f"[{number}/{len(chosen)}] {name}", file=sys.stderr, flush=True)
            outcome = run(ws, ws.case_dir(name))
            text = message(outcome) + (f" — {outcome.note}" if outcome.note else "")
            text = text.replace(str(root), "<tmp>")
            rows.append(
                f"| {number} | {cell(name)} | {stops_at(outcome)} | {cell(text)} | "
                f"{outcome.returncode} | {cell(outcome.left or files_left(outcome.workdir), 120)} |"
            )
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print("| # | case | stops at | message | exit | files left |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{len(rows)} cases in {time.perf_counter() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
