"""The training engine: learns, is deterministic, resumes exactly, stops on divergence, writes every field."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nin import layout, store
from nin.train import train
from nin.variant import Variant

TINY = dict(arch="cifar", width=0.125, dataset="synthetic", batch_size=50, lr=0.05, momentum=0.9, head="fc")

RESULT_TYPES = {
    "variant_id": str, "group_id": str, "status": str, "params": int, "macs": int, "flops": int, "epochs_done": int,
    "train_acc": float, "test_acc": float, "train_loss": float, "test_loss": float, "gap_acc": float,
    "gap_loss": float, "best_test_acc": float, "running_train_acc": float, "train_seconds": float,
    "images_per_s": float, "device": str, "versions": dict, "started": str, "finished": str, "dataset": str,
    "seed": int, "head": str, "cccp": int, "dropout": bool, "lr": float, "batch_size": int,
}  # fmt: skip


def read_metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / layout.METRICS_FILE).read_text().splitlines()]


def test_tiny_cifar_variant_learns_digits(tmp_path):
    variant = Variant(arch="cifar", width=0.25, dataset="digits", head="fc", epochs=3, batch_size=64, lr=0.05,
                      momentum=0.9)  # fmt: skip
    result = train(variant, tmp_path / variant.id, device="cpu", progress=False)
    assert result["status"] == "ok"
    assert result["test_acc"] >= 0.80


def test_result_json_has_every_field_with_types(tmp_path):
    variant = Variant(**TINY, epochs=2)
    result = train(variant, tmp_path / variant.id, device="cpu", progress=False)
    written = json.loads((tmp_path / variant.id / layout.RESULT_FILE).read_text())
    assert written == result
    for key, kind in RESULT_TYPES.items():
        assert isinstance(written[key], kind), (key, written[key])
    assert written["error"] is None
    # The CPU's peak is measured (GEMM probe); mfu is the documented formula over it.
    assert written["peak_source"] == "measured" and written["peak_flops"] > 0
    assert written["mfu"] == pytest.approx(3 * written["flops"] * written["images_per_s"] / written["peak_flops"])
    assert written["flops"] == 2 * written["macs"]
    assert written["gap_acc"] == pytest.approx(written["train_acc"] - written["test_acc"])
    assert written["gap_loss"] == pytest.approx(written["test_loss"] - written["train_loss"])
    assert set(written["versions"]) >= {"torch", "cuda"}
    assert written["epochs_done"] == 2 and len(read_metrics(tmp_path / variant.id)) == 2


def test_metrics_per_epoch_and_eval_train_every(tmp_path):
    variant = Variant(**TINY, epochs=3, eval_train_every=2)
    train(variant, tmp_path / variant.id, device="cpu", progress=False)
    rows = read_metrics(tmp_path / variant.id)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert ["gap_acc" in r for r in rows] == [False, True, True]  # every 2nd epoch, and always the last
    for row in rows:
        assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "epoch_seconds", "images_per_s"} <= set(row)


def test_same_variant_and_seed_is_bit_identical_on_cpu(tmp_path):
    variant = Variant(**TINY, epochs=2, dropout=True, augment=True)
    first = read_metrics_after(variant, tmp_path / "a")
    second = read_metrics_after(variant, tmp_path / "b")
    drop_timing = [{k: v for k, v in row.items() if k not in layout.METRICS_TIMING_KEYS} for row in first]
    assert drop_timing == [{k: v for k, v in row.items() if k not in layout.METRICS_TIMING_KEYS} for row in second]
    other_seed = read_metrics_after(variant.model_copy(update={"seed": 1}), tmp_path / "c")
    assert other_seed[-1]["train_loss"] != first[-1]["train_loss"]


def read_metrics_after(variant: Variant, run_dir) -> list[dict]:
    train(variant, run_dir, device="cpu", progress=False)
    return read_metrics(run_dir)


class _StopAfter:
    """A tracker that simulates a kill right after epoch `n` was checkpointed."""

    def __init__(self, n: int):
        self.n, self.seen = n, 0

    def start(self, variant, profile, resumed):
        pass

    def log_epoch(self, metrics):
        self.seen += 1
        if self.seen == self.n:
            raise KeyboardInterrupt

    def finish(self, result, cam_file=None):
        pass


def test_resumed_run_reaches_the_same_final_metrics(tmp_path):
    variant = Variant(**TINY, epochs=4, dropout=True, augment=True, schedule="cosine")
    straight = train(variant, tmp_path / "straight", device="cpu", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(variant, tmp_path / "resumed", device="cpu", progress=False, tracker=_StopAfter(2))
    assert not (tmp_path / "resumed" / layout.RESULT_FILE).exists()
    assert len(read_metrics(tmp_path / "resumed")) == 2
    logs: list[str] = []
    resumed = train(variant, tmp_path / "resumed", device="cpu", progress=False, log=logs.append)
    assert any("resuming after epoch 2" in line for line in logs)
    for key in ("train_acc", "test_acc", "train_loss", "test_loss", "gap_acc", "best_test_acc", "epochs_done"):
        assert resumed[key] == straight[key], key
    assert read_metrics(tmp_path / "resumed")[-1]["test_loss"] == read_metrics(tmp_path / "straight")[-1]["test_loss"]


def test_non_finite_loss_ends_as_diverged_not_an_exception(tmp_path):
    variant = Variant(**{**TINY, "lr": 10.0, "momentum": 0.99}, epochs=3)
    result = train(variant, tmp_path / variant.id, device="cpu", progress=False)
    assert result["status"] == "diverged"
    assert "non-finite" in result["error"]
    assert result["epochs_done"] < 3
    json.loads((tmp_path / variant.id / layout.RESULT_FILE).read_text())  # strict JSON: no NaN written


def test_corrupt_checkpoint_restarts_from_scratch_and_says_so(tmp_path):
    variant = Variant(**TINY, epochs=2)
    reference = train(variant, tmp_path / "ref", device="cpu", progress=False)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(variant, run_dir, device="cpu", progress=False, tracker=_StopAfter(1))
    checkpoint = run_dir / layout.CHECKPOINT_FILE
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])  # torn write
    logs: list[str] = []
    result = train(variant, run_dir, device="cpu", progress=False, log=logs.append)
    assert sum("checksum mismatch" in line for line in logs) == 1
    assert result["test_acc"] == reference["test_acc"]


def test_checkpoint_of_another_variant_is_refused(tmp_path):
    a, b = Variant(**TINY, epochs=2), Variant(**TINY, epochs=2, seed=1)
    with pytest.raises(KeyboardInterrupt):
        train(a, tmp_path / "a", device="cpu", progress=False, tracker=_StopAfter(1))
    with pytest.raises(store.CorruptCheckpointError, match="belongs to variant"):
        store.load_checkpoint(tmp_path / "a" / layout.CHECKPOINT_FILE, b.id)


def test_checkpoint_loads_with_the_safe_loader_only(tmp_path):
    variant = Variant(**TINY, epochs=1)
    train(variant, tmp_path / "r", device="cpu", progress=False)
    blob = (tmp_path / "r" / layout.CHECKPOINT_FILE).read_bytes()[:-64]
    import io

    state = torch.load(io.BytesIO(blob), weights_only=True)  # plain tensors and containers only
    assert state["variant_id"] == variant.id and state["epoch"] == 1
    assert {"model", "optimizer", "scheduler", "rng"} <= set(state["trainer"])


def test_learning_rate_schedules_come_from_timm(tmp_path):
    variant = Variant(**TINY, epochs=3, schedule="step", step_size=1, gamma=0.5)
    train(variant, tmp_path / "r", device="cpu", progress=False)
    lrs = [row["lr"] for row in read_metrics(tmp_path / "r")]
    assert lrs == pytest.approx([0.05, 0.025, 0.0125])
    cosine = Variant(**TINY, epochs=3, schedule="cosine")
    train(cosine, tmp_path / "c", device="cpu", progress=False)
    lrs = [row["lr"] for row in read_metrics(tmp_path / "c")]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.05 * (1 + math.cos(math.pi / 3)) / 2)
