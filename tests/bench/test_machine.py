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
    info = machine.machine_info(torch.device("cpu"), calibration_seconds=0.05)
    assert info["cpu_model"] and info["threads"] == torch.get_num_threads() and info["gpu"] is None
    assert info["torch"] == torch.__version__ and info["device"] == "cpu"
    assert info["commit"] is None or len(info["commit"]) == 12  # None outside a git checkout


def test_the_calibration_is_a_positive_rate_in_the_record():
    gflops = machine.calibration_gflops(seconds=0.05, warmup_seconds=0.01)
    assert isinstance(gflops, float) and gflops > 0
    assert machine.calibration_flops() == 2 * 64 * 64 * 3 * 3 * 112 * 112
    info = machine.machine_info(torch.device("cpu"), calibration_seconds=0.05)
    assert isinstance(info["calibration_gflops"], float) and info["calibration_gflops"] > 0


def test_the_calibration_leaves_the_global_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    machine.calibration_gflops(seconds=0.01, warmup_seconds=0.0)
    assert torch.equal(torch.rand(4), expected)
