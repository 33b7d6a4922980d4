"""The machine record (neuron_ablation.machine) that training.json and optimal stores carry."""

from __future__ import annotations

import json
import subprocess

from neuron_ablation import machine

CPUINFO = (
    "processor\t: 0\nmodel name\t: Example CPU 9000\n"
    "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 amx_tile\n\n"
    "processor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse2 avx avx2\n"
)


def test_cpu_facts_reads_the_model_and_the_speed_flags(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    facts = machine.cpu_facts(cpuinfo)
    assert facts["cpu"] == "Example CPU 9000"
    assert facts["isa_flags"] == ["avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert machine.cpu_facts(cpuinfo)["isa_flags"] == ["avx", "avx2", "fma"]


def test_cpu_facts_without_cpuinfo_names_the_platform(tmp_path):
    facts = machine.cpu_facts(tmp_path / "missing")
    assert facts["isa_flags"] is None and isinstance(facts["cpu"], str)


def test_machine_record_is_json_and_names_torch(tmp_path):
    import torch

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    record = json.loads(json.dumps(machine.machine_record(cpuinfo)))
    assert record["cpu"] == "Example CPU 9000"
    assert record["torch"] == str(torch.__version__)
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["torch_cpu_capability"] in (
        "DEFAULT",
        "AVX2",
        "AVX512",
        "ZVECTOR",
        "VSX",
        "SVE256",
    )


def test_git_commit_of_a_checkout_and_outside_one(tmp_path):
    assert machine.git_commit(tmp_path) is None
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert machine.git_commit(tmp_path) is None  # no commit yet
    subprocess.run(
        ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t",
         "commit", "-q", "--allow-empty", "-m", "x"],
        check=True,
    )  # fmt: skip
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert machine.git_commit(tmp_path) == head
