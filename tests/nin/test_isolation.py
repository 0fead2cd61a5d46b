"""Nothing a variant sets process-wide outlives it: deterministic algorithms, cuDNN autotuning, threads, the RNG."""

from __future__ import annotations

import pytest
import torch

from nin.variant import Variant
from runners.worker import RunContext, run_variant

TINY = dict(arch="cifar", width=0.125, dataset="synthetic", batch_size=100, lr=0.05, head="fc", epochs=1)


def settings() -> tuple:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
    )


@pytest.fixture
def context(tmp_path):
    return RunContext(grid_dir=tmp_path / "grid", grid_name="iso", wandb_mode="disabled", progress=False, cpu_threads=1)


def test_deterministic_then_plain_variant_in_one_worker(context):
    before = settings()
    rng_before = torch.get_rng_state()
    seen: list[tuple] = []

    import nin.train

    original = nin.train._train

    def spy(variant, *args, **kwargs):
        seen.append((variant.deterministic, *settings()))  # what the variant trained under
        return original(variant, *args, **kwargs)

    nin.train._train = spy
    try:
        deterministic = run_variant(Variant(**TINY, deterministic=True), context, torch.device("cpu"))
        after_first = settings()
        plain = run_variant(Variant(**TINY, deterministic=False, seed=1), context, torch.device("cpu"))
        after_second = settings()
    finally:
        nin.train._train = original
    assert deterministic["status"] == "ok" and plain["status"] == "ok"
    assert seen[0][:2] == (True, True) and seen[0][4] == 1  # deterministic on, one thread, while it trained
    assert seen[1][:2] == (False, False) and seen[1][4] == 1  # the next variant starts clean
    assert after_first == before and after_second == before  # restored after each
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_settings_restored_when_a_variant_fails(context, monkeypatch):
    before = settings()

    def boom(*args, **kwargs):
        assert torch.are_deterministic_algorithms_enabled() and torch.get_num_threads() == 1
        raise RuntimeError("failure inside the variant")

    monkeypatch.setattr("nin.train._train", boom)
    result = run_variant(Variant(**TINY, deterministic=True), context, torch.device("cpu"))
    assert result["status"] == "failed" and "failure inside the variant" in result["error"]
    assert settings() == before
