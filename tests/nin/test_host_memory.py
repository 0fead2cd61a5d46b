"""While a CPU variant trains, freed activation memory stays in the process; afterwards it goes back to the kernel.

Measured the way it matters, on real training steps: page faults per step (getrusage's minor faults) and the
process's resident memory. Every threshold is derived from one independent figure, the bytes a training step saves
for its backward pass (tensor shapes × element size in the precision in use, read from autograd's saved-tensor
hooks), never from the faults or resident sizes asserted on. The precision is pinned to fp32: with `auto` a CPU with
native bf16 keeps half the bytes, and the test would measure the CPU instead of the allocator.

Each check has a negative control in the suite: with the behaviour switched off (glibc's defaults while training,
or no trim at the end), the same assertion fails.
"""

from __future__ import annotations

import resource
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from nin import host_memory
from nin.train import Trainer, variant_settings
from nin.variant import Variant

pytestmark = pytest.mark.skipif(not host_memory.supported(), reason="keeping freed memory needs glibc (Linux)")

# The seeds' NiN at half width on 112 px, batch 96: a step saves ~80 MiB of activations for its backward pass (12 MiB
# for each conv output of the first block), which glibc by default maps and unmaps (or trims) step after step.
BIG = dict(arch="d2l", width=0.5, image_size=112, batch_size=96, dataset="synthetic", precision="fp32")
MIB = 2**20
PAGE = resource.getpagesize()


def batch(variant: Variant) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(variant.batch_size, variant.in_channels, variant.image_size, variant.image_size)
    y = torch.randint(0, variant.num_classes, (variant.batch_size,))
    return x.contiguous(memory_format=torch.channels_last), y


def saved_bytes(trainer: Trainer) -> int:
    """Bytes of the distinct storages one training step's forward pass saves for backward, in the precision in use."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    x, _ = batch(trainer.variant)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), torch.autocast(**trainer.autocast):
        trainer.forward(x)
    return sum(storages.values())


def faults_per_step(trainer: Trainer, steps: int) -> list[int]:
    x, y = batch(trainer.variant)
    faults = []
    for _ in range(steps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        trainer.train_step(x, y)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


@dataclass
class Measured:
    saved: int  # bytes a step saves for backward: the independent figure every threshold comes from
    faults: list[int]  # minor page faults of each step
    resident_inside: int  # bytes resident at the variant's end, before glibc's defaults come back
    resident_after: int  # bytes resident after it

    @property
    def saved_pages(self) -> int:
        return self.saved // PAGE


def train_variant(steps: int = 6) -> Measured:
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with variant_settings(variant, cpu, threads=1):
        trainer = Trainer(variant, cpu)
        saved = saved_bytes(trainer)
        faults = faults_per_step(trainer, steps)
        resident_inside = resident_bytes()
        del trainer
    return Measured(saved, faults, resident_inside, resident_bytes())


def assert_steps_reuse_freed_memory(measured: Measured) -> None:
    # The first step faults in its activations' pages; once the heap holds them, a step takes almost none. A step can
    # still grow the heap past a fragment now and then, so the steady state is the quietest of the last three steps.
    faults = measured.faults
    assert measured.saved > 64 * MIB, measured.saved  # the net is big enough for glibc to map its activations
    assert faults[0] > measured.saved_pages // 2, (faults, measured.saved_pages)
    assert min(faults[-3:]) < measured.saved_pages // 10, (faults, measured.saved_pages)


def assert_memory_given_back(resident_inside: int, resident_after: int, saved: int) -> None:
    # At least half of what a step saved for backward leaves the process when the variant ends.
    assert resident_after < resident_inside - saved // 2, (resident_inside // MIB, resident_after // MIB, saved // MIB)


def glibc_defaults(libc) -> None:
    """glibc's default thresholds, set explicitly (as after any earlier variant of the process), without a trim."""
    libc.mallopt(host_memory.M_MMAP_MAX, host_memory.DEFAULT_MMAP_MAX)
    libc.mallopt(host_memory.M_TRIM_THRESHOLD, host_memory.DEFAULT_TRIM_THRESHOLD)


def switched_off(monkeypatch, name: str, replacement: Callable) -> None:
    monkeypatch.setattr(host_memory, name, replacement)


def test_training_steps_reuse_freed_memory_and_give_it_back_after():
    measured = train_variant()
    assert_steps_reuse_freed_memory(measured)
    assert_memory_given_back(measured.resident_inside, measured.resident_after, measured.saved)


def test_negative_control_without_kept_memory_every_step_faults_its_activations_in(monkeypatch):
    switched_off(monkeypatch, "_keep", glibc_defaults)
    measured = train_variant()
    with pytest.raises(AssertionError):
        assert_steps_reuse_freed_memory(measured)
    assert min(measured.faults[-3:]) > measured.saved_pages // 2, measured.faults  # and by far, not by a hair


def test_negative_control_without_the_final_trim_the_memory_stays(monkeypatch):
    switched_off(monkeypatch, "_release", glibc_defaults)
    measured = train_variant()
    assert_steps_reuse_freed_memory(measured)  # keeping works as before: only the trim at the end is missing
    with pytest.raises(AssertionError):
        assert_memory_given_back(measured.resident_inside, measured.resident_after, measured.saved)


def test_nested_settings_keep_memory_until_the_outermost_ends():
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with variant_settings(variant, cpu, threads=1):
        trainer = Trainer(variant, cpu)
        pages = saved_bytes(trainer) // PAGE
        with variant_settings(variant, cpu, threads=1):  # e.g. a training run inside a bench
            faults_per_step(trainer, steps=3)
        faults = faults_per_step(trainer, steps=3)  # the inner exit did not restore the defaults
        assert min(faults) < pages // 10, (faults, pages)


def test_negative_control_nesting_that_restored_the_defaults_at_the_inner_exit_would_fault(monkeypatch):
    # What the depth count prevents: the inner exit handing glibc its defaults back mid-variant.
    libc = host_memory._glibc()
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with variant_settings(variant, cpu, threads=1):
        trainer = Trainer(variant, cpu)
        pages = saved_bytes(trainer) // PAGE
        faults_per_step(trainer, steps=3)
        glibc_defaults(libc)  # as an inner exit without the depth count would
        faults = faults_per_step(trainer, steps=3)
        assert min(faults) > pages // 10, (faults, pages)


def test_memory_given_back_when_the_variant_fails():
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with pytest.raises(RuntimeError, match="boom"):
        with variant_settings(variant, cpu, threads=1):
            trainer = Trainer(variant, cpu)
            saved = saved_bytes(trainer)
            faults_per_step(trainer, steps=2)
            resident_inside = resident_bytes()
            del trainer
            raise RuntimeError("boom")
    assert_memory_given_back(resident_inside, resident_bytes(), saved)


def test_released_gives_the_defaults_back_inside_a_variant_and_keeping_resumes_after():
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with variant_settings(variant, cpu, threads=1):
        trainer = Trainer(variant, cpu)
        saved = saved_bytes(trainer)
        faults_per_step(trainer, steps=3)
        resident = resident_bytes()
        with host_memory.released():  # what bench.profile_step --release-freed-memory measures under
            assert_memory_given_back(resident, resident_bytes(), saved)
        faults = faults_per_step(trainer, steps=4)
        assert min(faults[-3:]) < saved // PAGE // 10, faults
