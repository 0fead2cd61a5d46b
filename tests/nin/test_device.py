"""Peaks for MFU (measured on CPUs and cached per machine, datasheet on GPUs), precision choice, fp16 training."""

from __future__ import annotations

import json
import os

import pytest
import torch

from nin import device as dev
from nin import layout, store
from nin.train import Trainer, train
from nin.variant import Variant
from tests.nin.test_train import TINY, read_metrics


@pytest.fixture
def peak_cache(tmp_path, monkeypatch):
    """An empty peak cache in tmp, a short probe, and no peak remembered by this process."""
    monkeypatch.setenv(dev.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(dev, "PROBE_SECONDS", 0.2)
    dev.measured_cpu_peak.cache_clear()
    yield tmp_path / "cache" / dev.PEAK_FILE
    dev.measured_cpu_peak.cache_clear()


def _count_probes(monkeypatch) -> list[str]:
    calls: list[str] = []
    real = dev.gemm_rate

    def counted(precision: str, *args, **kwargs) -> float:
        calls.append(precision)
        return real(precision, *args, **kwargs)

    monkeypatch.setattr(dev, "gemm_rate", counted)
    return calls


def test_cpu_peak_is_probed_once_then_read_from_the_cache(peak_cache, monkeypatch):
    probes = _count_probes(monkeypatch)
    peak = dev.peak_flops(torch.device("cpu"), "fp32")
    assert peak is not None and peak.source == "measured" and peak.flops > 1e9  # any CPU does a GFLOP/s
    assert probes and set(probes) == {"fp32"}
    entry = json.loads(peak_cache.read_text())["entries"][0]
    assert entry["machine"] == dev.machine_key(torch.get_num_threads())
    assert entry["machine"]["cpu"] == dev.cpu_model() and entry["machine"]["torch"] == torch.__version__
    assert entry["peaks"]["fp32"] == peak.flops

    dev.measured_cpu_peak.cache_clear()  # a new process: reads the file, probes nothing
    probes.clear()
    assert dev.peak_flops(torch.device("cpu"), "fp32") == peak
    assert probes == []


def test_cpu_peak_is_measured_again_when_the_machine_key_changes(peak_cache, monkeypatch):
    probes = _count_probes(monkeypatch)
    first = dev.measured_cpu_peak("fp32", 1)
    n = len(probes)
    dev.measured_cpu_peak.cache_clear()
    monkeypatch.setattr(torch, "__version__", "0.0.0-other")  # e.g. torch upgraded
    assert dev.measured_cpu_peak("fp32", 1) > 0
    assert len(probes) > n
    dev.measured_cpu_peak.cache_clear()
    assert dev.measured_cpu_peak("fp32", 2) > 0  # another thread count is another key
    entries = json.loads(peak_cache.read_text())["entries"]
    assert len(entries) == 3 and first > 0
    assert {(e["machine"]["torch"], e["machine"]["threads"]) for e in entries} == {
        (entries[0]["machine"]["torch"], 1),
        ("0.0.0-other", 1),
        ("0.0.0-other", 2),
    }


def test_an_unreadable_cache_is_measured_again(peak_cache, monkeypatch):
    peak_cache.parent.mkdir(parents=True)
    peak_cache.write_text("{not json")
    probes = _count_probes(monkeypatch)
    assert dev.measured_cpu_peak("fp32", 1) > 0 and probes
    assert json.loads(peak_cache.read_text())["entries"][0]["peaks"]["fp32"] > 0


def test_precisions_probe_their_own_dtype(peak_cache, monkeypatch):
    seen: list[torch.dtype] = []
    real_mm = torch.mm

    def mm(a, b, *, out):
        seen.append(a.dtype)
        return real_mm(a, b, out=out)

    monkeypatch.setattr(torch, "mm", mm)
    dev.measured_cpu_peak("bf16", 1)
    assert set(seen) == {torch.bfloat16}
    cached = json.loads(peak_cache.read_text())["entries"][0]["peaks"]
    assert set(cached) == {"bf16"}


@pytest.mark.parametrize(
    ("name", "precision", "expected"),
    [
        ("Tesla T4", "fp16", 65e12),
        ("Tesla T4", "fp32", 8.1e12),
        ("Tesla T4", "bf16", None),  # emulated there: no peak, so no MFU against a wrong one
        ("Tesla V100-SXM2-16GB", "fp16", 125e12),
        ("Tesla V100-SXM2-16GB", "fp32", 15.7e12),
        ("Tesla V100-PCIE-32GB", "fp16", 112e12),
        ("NVIDIA H100 80GB HBM3", "fp16", 989e12),
        ("NVIDIA H100 PCIe", "bf16", 756e12),
        ("NVIDIA A100-SXM4-40GB", "fp16", 312e12),
        ("Some Unlisted GPU", "fp16", None),
    ],
)
def test_gpu_peaks_come_from_the_datasheet(monkeypatch, name, precision, expected):
    monkeypatch.setattr(dev, "device_name", lambda device: name)
    peak = dev.peak_flops(torch.device("cuda", 0), precision)
    if expected is None:
        assert peak is None
    else:
        assert peak == dev.Peak(expected, "datasheet")


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"),
                                                      ((7, 0), "fp16"), ((6, 1), "fp32")])  # fmt: skip
def test_auto_precision_on_a_gpu_follows_its_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert dev.resolve_precision(torch.device("cuda", 0), "auto") == expected
    assert dev.resolve_precision(torch.device("cuda", 0), "fp32") == "fp32"


def test_fp16_variant_trains_on_cpu_with_a_gradient_scaler(tmp_path):
    # Small: fp16 convolutions are emulated on most CPUs (~15x slower than fp32 here).
    variant = Variant(**TINY, epochs=2, precision="fp16", train_size=100, test_size=50)
    result = train(variant, tmp_path / "r", device="cpu", progress=False)
    assert result["status"] == "ok" and result["precision"] == "fp16"
    assert result["train_loss"] is not None and result["peak_source"] == "measured"
    rows = read_metrics(tmp_path / "r")
    assert all(isinstance(row["skipped_steps"], int) for row in rows)
    assert sum(row["skipped_steps"] for row in rows) < 4  # 2 steps per epoch: at least one step was applied
    saved = store.load_checkpoint(tmp_path / "r" / layout.CHECKPOINT_FILE, variant.id)["trainer"]["scaler"]
    assert saved["scale"] > 0  # the loss scale travels with the checkpoint


def test_fp16_overflowing_steps_are_skipped_and_counted_not_diverged():
    variant = Variant(**TINY, precision="fp16", dropout=False)
    trainer = Trainer(variant, torch.device("cpu"))
    # A loss scale so large that every scaled fp16 gradient overflows: the scaler must skip those steps.
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    x = torch.randn(8, variant.in_channels, variant.image_size, variant.image_size)
    y = torch.randint(0, variant.num_classes, (8,))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    stats = trainer.train_epoch([(x, y)] * 3, epoch=0)
    assert stats.skipped_steps == 3 and stats.loss == stats.loss  # finite loss, counted skips, no Diverged
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    assert trainer.scaler.get_scale() == 2.0**37  # halved once per skipped step
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    assert trainer.train_epoch([(x, y)] * 2, epoch=1).skipped_steps == 0  # counted per epoch, from zero
    assert not all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_fp16_checkpoint_state_restores_the_loss_scale():
    variant = Variant(**TINY, precision="fp16", dropout=False)
    x = torch.randn(8, variant.in_channels, variant.image_size, variant.image_size)
    y = torch.randint(0, variant.num_classes, (8,))
    first = Trainer(variant, torch.device("cpu"))
    first.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    first.train_epoch([(x, y)] * 2, epoch=0)  # two skips: the scale is now 2**38
    resumed = Trainer(variant, torch.device("cpu"))
    resumed.load_state_dict(first.state_dict())
    assert resumed.scaler.get_scale() == first.scaler.get_scale() == 2.0**38


def test_a_gpu_process_fixes_the_cublas_workspace_that_deterministic_variants_need(monkeypatch) -> None:
    from nin.device import CUBLAS_WORKSPACE, prepare_cuda_process

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    prepare_cuda_process(torch.device("cpu"))
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ  # a CPU process is left as it was
    prepare_cuda_process(torch.device("cuda", 0))  # a device object only: no CUDA call is made
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE == ":4096:8"
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    prepare_cuda_process(torch.device("cuda", 0))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # the user's own fixed size wins


def test_the_load_average_is_read_afresh_each_time_and_none_without_one(monkeypatch) -> None:
    loads = iter([(0.5, 0, 0), (6.25, 0, 0)])
    monkeypatch.setattr(dev.os, "getloadavg", lambda: next(loads))
    assert (dev.load_average(), dev.load_average()) == (0.5, 6.25)

    def unavailable():
        raise OSError("no load average here")

    monkeypatch.setattr(dev.os, "getloadavg", unavailable)
    assert dev.load_average() is None
