"""Every branch on the CPU's capabilities, on every machine: the CPU is faked where the code reads it.

nin.device reads /proc/cpuinfo (its flags and model name, through `CPUINFO`) and torch's CPU capability string.
Both readers are cached per process, so the fixture clears the caches before and after each test: a faked CPU never
reaches another test. The GEMM probe itself is mocked: these tests check the branching and the peak cache's key,
not how fast a real or emulated bf16 matmul runs.
"""

from __future__ import annotations

import json

import pytest
import torch

from nin import device as dev
from nin.train import Trainer
from nin.variant import Variant
from tests.nin.test_train import TINY

BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ssse3 sse4_1 sse4_2 popcnt aes xsave"
# name: (model name, flags beyond BASE, torch's capability string, what precision "auto" must resolve to)
CPUS = {
    "zen3": ("AMD EPYC 7B13", "avx f16c fma avx2 bmi2", "AVX2", "fp32"),
    "zen4": ("AMD EPYC 9B14", "avx fma avx2 avx512f avx512dq avx512_vnni avx512_bf16", "AVX512", "bf16"),
    "zen5": ("AMD EPYC 9B45", "avx fma avx2 avx512f avx_vnni avx512_vnni avx512_bf16", "AVX512", "bf16"),
    "sapphire_rapids": ("Intel(R) Xeon(R) Platinum 8481C", "avx fma avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 "
                        "amx_tile amx_int8", "AVX512", "bf16"),  # fmt: skip
    "amx_without_avx512_bf16_flag": ("Intel(R) Xeon(R) faked", "avx fma avx2 avx512f amx_bf16 amx_tile", "AVX512",
                                     "bf16"),  # fmt: skip
    "skylake_avx512": ("Intel(R) Xeon(R) Gold 6148", "avx fma avx2 avx512f avx512dq avx512_vnni", "AVX512", "fp32"),
    "torch_reports_amx": ("Faked CPU", "avx fma avx2", "AMX", "bf16"),
    "no_avx": ("QEMU Virtual CPU", "", "DEFAULT", "fp32"),
}


class FakeCpu:
    def __init__(self, tmp_path, monkeypatch) -> None:
        self.tmp_path, self.monkeypatch = tmp_path, monkeypatch

    def __call__(self, name: str) -> str:
        """Make this process see the CPU `name` of CPUS; returns what "auto" must resolve to there."""
        model, flags, capability, expected = CPUS[name]
        cpuinfo = self.tmp_path / f"cpuinfo-{name}"
        core = f"processor\t: {{n}}\nvendor_id\t: faked\nmodel name\t: {model}\nflags\t\t: {BASE} {flags}\n\n"
        cpuinfo.write_text(core.format(n=0) + core.format(n=1))
        self.monkeypatch.setattr(dev, "CPUINFO", cpuinfo)
        self.monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        _clear_caches()
        return expected


def _clear_caches() -> None:
    dev.cpu_flags.cache_clear()
    dev.cpu_model.cache_clear()
    dev.measured_cpu_peak.cache_clear()


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    _clear_caches()
    yield FakeCpu(tmp_path, monkeypatch)
    monkeypatch.undo()  # the real /proc/cpuinfo and capability back before the caches are refilled
    _clear_caches()


@pytest.mark.parametrize("name", list(CPUS))
def test_auto_precision_follows_the_faked_cpu(fake_cpu, name):
    expected = fake_cpu(name)
    cpu = torch.device("cpu")
    assert dev.resolve_precision(cpu, "auto") == expected
    assert dev.cpu_has_fast_bf16() == (expected == "bf16")
    for requested in ("fp32", "bf16", "fp16"):  # an explicit request is kept on every CPU
        assert dev.resolve_precision(cpu, requested) == requested


def test_the_flag_reader_sees_only_the_faked_cpu(fake_cpu):
    fake_cpu("sapphire_rapids")
    flags = dev.cpu_flags()
    assert {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"} <= set(flags) and "asimd" not in flags
    assert flags[-1] == "torch:AVX512" and dev.cpu_model() == "Intel(R) Xeon(R) Platinum 8481C"
    fake_cpu("zen3")  # the caches were cleared: nothing of the last fake is left
    assert not {"avx512_bf16", "amx_bf16", "avx512f"} & set(dev.cpu_flags())
    assert dev.cpu_model() == "AMD EPYC 7B13"


def test_an_unreadable_cpuinfo_means_no_flags_and_fp32(fake_cpu, tmp_path, monkeypatch):
    fake_cpu("no_avx")
    monkeypatch.setattr(dev, "CPUINFO", tmp_path / "missing")
    _clear_caches()
    assert dev.cpu_flags() == ("torch:DEFAULT",)
    assert dev.resolve_precision(torch.device("cpu"), "auto") == "fp32"


@pytest.mark.parametrize(
    ("name", "dtype"), [("zen3", None), ("zen4", torch.bfloat16), ("sapphire_rapids", torch.bfloat16)]
)
def test_a_trainer_autocasts_in_what_auto_resolved_to(fake_cpu, name, dtype):
    expected = fake_cpu(name)
    trainer = Trainer(Variant(**TINY, precision="auto"), torch.device("cpu"))
    assert trainer.precision == expected
    assert trainer.autocast["enabled"] == (dtype is not None)
    if dtype is not None:
        assert trainer.autocast["dtype"] == dtype


def test_the_peak_cache_keys_each_faked_cpu_apart_and_probes_each_once(fake_cpu, tmp_path, monkeypatch):
    monkeypatch.setenv(dev.CACHE_DIR_ENV, str(tmp_path / "cache"))
    probes: list[tuple[str, str]] = []
    rates = {"fp32": 1.0e11, "bf16": 4.0e11}

    def probe(precision: str, seconds: float = dev.PROBE_SECONDS, sizes=dev.PROBE_SIZES) -> float:
        probes.append((dev.cpu_model(), precision))
        return rates[precision] * (2 if "Xeon" in dev.cpu_model() else 1)

    monkeypatch.setattr(dev, "gemm_rate", probe)
    fake_cpu("zen3")
    zen3 = dev.measured_cpu_peak("fp32", 1)
    fake_cpu("sapphire_rapids")
    spr = dev.measured_cpu_peak("bf16", 1)
    assert (zen3, spr) == (1.0e11, 8.0e11)
    entries = json.loads((tmp_path / "cache" / dev.PEAK_FILE).read_text())["entries"]
    assert [e["machine"]["cpu"] for e in entries] == ["AMD EPYC 7B13", "Intel(R) Xeon(R) Platinum 8481C"]
    assert "amx_bf16" in entries[1]["machine"]["flags"] and "amx_bf16" not in entries[0]["machine"]["flags"]
    assert [set(e["peaks"]) for e in entries] == [{"fp32"}, {"bf16"}]

    n = len(probes)
    fake_cpu("zen3")  # back on the first CPU, in a "new process": its peak is read from the cache, not probed
    assert dev.measured_cpu_peak("fp32", 1) == 1.0e11 and len(probes) == n
    fake_cpu("zen4")  # same torch and thread count, other flags and model: measured anew
    assert dev.measured_cpu_peak("fp32", 1) == 1.0e11 and len(probes) == n + 1
    assert probes[-1] == ("AMD EPYC 9B14", "fp32")


def test_no_fake_outlives_its_test():
    # Runs after the tests above (file order): the readers see this machine's real CPU again.
    real = open("/proc/cpuinfo").read() if dev.Path("/proc/cpuinfo").exists() else ""
    assert dev.CPUINFO == dev.Path("/proc/cpuinfo")
    if "model name" in real:
        assert dev.cpu_model() in real
    assert all(flag.startswith("torch:") or f" {flag}" in real for flag in dev.cpu_flags())
