"""While a CPU variant trains, freed activation memory stays in the process; afterwards it goes back to the kernel.

Measured the way it matters, on real training steps: page faults per step (getrusage's minor faults) and the
process's resident memory. With the kept memory switched off (checked by hand), every step took ~12,000 faults
instead of a few hundred at most, and without the final trim the resident memory did not fall.
"""

from __future__ import annotations

import resource

import pytest
import torch

from nin import host_memory
from nin.train import Trainer, variant_settings
from nin.variant import Variant

pytestmark = pytest.mark.skipif(not host_memory.supported(), reason="keeping freed memory needs glibc (Linux)")

# The seeds' NiN at half width on 112 px, batch 96: a step allocates and frees well over 64 MiB of activations and
# gradients (12 MiB each in the first block), which glibc by default maps and unmaps (or trims) step after step.
BIG = dict(arch="d2l", width=0.5, image_size=112, batch_size=96, dataset="synthetic")
MIB = 2**20
STEADY_FAULTS = 64 * MIB // resource.getpagesize() // 10  # a tenth of the pages a step allocates


def faults_per_step(trainer: Trainer, steps: int) -> list[int]:
    v = trainer.variant
    x = torch.randn(v.batch_size, v.in_channels, v.image_size, v.image_size)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, v.num_classes, (v.batch_size,))
    faults = []
    for _ in range(steps):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        trainer.train_step(x, y)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return faults


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def test_training_steps_reuse_freed_memory_and_give_it_back_after():
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with variant_settings(variant, cpu, threads=1):
        faults = faults_per_step(Trainer(variant, cpu), steps=6)
        resident_inside = resident_bytes()
    resident_after = resident_bytes()
    # The first step faults in every activation page; once the heap holds them, a step takes almost none. A step can
    # still grow the heap past a fragment now and then (~3,000 faults seen), so the steady state is the quietest of
    # the last three steps; with glibc's defaults every step took ~12,000.
    assert faults[0] > STEADY_FAULTS * 10, faults
    assert min(faults[-3:]) < STEADY_FAULTS, faults
    assert resident_after < resident_inside - 64 * MIB, (resident_inside // MIB, resident_after // MIB)


def test_nested_settings_keep_memory_until_the_outermost_ends():
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with variant_settings(variant, cpu, threads=1):
        trainer = Trainer(variant, cpu)
        with variant_settings(variant, cpu, threads=1):  # e.g. a training run inside a bench
            faults_per_step(trainer, steps=3)
        faults = faults_per_step(trainer, steps=3)  # the inner exit did not restore the defaults
        assert min(faults) < STEADY_FAULTS, faults


def test_memory_given_back_when_the_variant_fails():
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with pytest.raises(RuntimeError, match="boom"):
        with variant_settings(variant, cpu, threads=1):
            faults_per_step(Trainer(variant, cpu), steps=2)
            resident_inside = resident_bytes()
            raise RuntimeError("boom")
    assert resident_bytes() < resident_inside - 64 * MIB


def test_released_gives_the_defaults_back_inside_a_variant_and_keeping_resumes_after():
    variant = Variant(**BIG)
    cpu = torch.device("cpu")
    with variant_settings(variant, cpu, threads=1):
        trainer = Trainer(variant, cpu)
        faults_per_step(trainer, steps=3)
        resident = resident_bytes()
        with host_memory.released():  # what bench.profile_step --release-freed-memory measures under
            assert resident_bytes() < resident - 64 * MIB
        faults = faults_per_step(trainer, steps=4)
        assert min(faults[-3:]) < STEADY_FAULTS, faults
