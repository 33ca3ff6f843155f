"""``frcnn.bench.machine``: the record of the machine a benchmark ran on."""

import torch

from frcnn.bench import machine


def test_the_cpu_model_is_read_as_lscpu_names_it(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: avx2\n")
    real_path = machine.Path
    monkeypatch.setattr(machine, "Path", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_path(p))
    assert machine.cpu_model() == "AMD EPYC 7B13"


def test_the_record_names_the_cpu_threads_versions_and_commit():
    info = machine.machine_info(torch.device("cpu"))
    assert info["cpu_model"] and info["threads"] == torch.get_num_threads() and info["gpu"] is None
    assert info["torch"] == torch.__version__ and info["device"] == "cpu"
    assert info["commit"] is None or len(info["commit"]) == 12  # None outside a git checkout
