"""Train one Variant into its run directory: result.json, metrics.jsonl, checkpoint.pt.

The data stay on the device as uint8; resize, normalization and augmentation are batched tensor ops. Each step
runs bf16 autocast where the hardware computes bf16 natively (fp16 with a gradient scaler on GPUs without bf16),
channels_last, and no host sync (metrics accumulate on the device). All randomness of an epoch (batch order,
augmentation, dropout) is derived from (seed, epoch), so a run resumed from its last checkpoint finishes with exactly
the metrics of an uninterrupted run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from nin import host_memory, store
from nin._timm import create_optimizer_v2, create_scheduler_v2
from nin.device import (
    AUTOCAST_DTYPES,
    load_average,
    prepare_cuda_process,
    resolve_device,
    resolve_precision,
    synchronize,
)
from nin.layout import CAM_FILE, CHECKPOINT_FILE, METRICS_FILE, RESULT_FILE
from nin.models import create_model
from nin.plateau import BUDGET, CAP, CRITERION, DROP, STOP, Plateau
from nin.profile import profile_variant
from nin.results import RunOutcome, build_result, now_iso
from nin.seeding import epoch_seed
from nin.variant import Variant

WARMUP_START = 0.01  # warm-up starts at this share of lr, under timm's schedules and the plateau rule alike
DIVERGENCE_CHECK_EVERY = 32  # steps between the (only) host syncs of an epoch


class StopAfterEpoch(KeyboardInterrupt):
    """Raised once the epoch in flight is checkpointed, when `request_stop` was called (a cluster's signal before its
    time limit or a preemption): an interruption like Ctrl-C, so every caller already lets it through, but one that
    loses nothing."""


_stop_requested = threading.Event()


def request_stop() -> None:
    """Stop the training in this process after the checkpoint of the epoch in flight (safe in a signal handler)."""
    _stop_requested.set()


def stop_requested() -> bool:
    return _stop_requested.is_set()


def eval_batch_size(batch_size: int) -> int:
    """Eval passes keep no activations for backward: twice the training batch, at least 256, at most 1024."""
    return min(max(2 * batch_size, 256), 1024)


def evaluates_train_set(epoch: int, last: bool, every: int) -> bool:
    """Whether the eval-mode pass over the training set runs after 1-based `epoch`: every `every` epochs (0: never
    before the end) and always after the last (the cap, a fixed budget's end, or where the stopping rule ended the
    run), which gives result.json its train_acc and gaps."""
    return last or bool(every and epoch % every == 0)


@contextmanager
def variant_settings(variant: Variant, device: torch.device, threads: int | None = None) -> Iterator[None]:
    """The process-wide torch settings of one variant, restored when it ends, by success or by failure: deterministic
    algorithms, cuDNN autotuning, intra-op threads, the global RNG and, on a CPU, the allocator keeping freed memory
    (nin.host_memory). Nothing one variant sets reaches the next variant of the same worker."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
        torch.get_rng_state(),
    )
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    with host_memory.retained() if device.type == "cpu" else nullcontext():
        try:
            torch.use_deterministic_algorithms(variant.deterministic)
            torch.backends.cudnn.benchmark = device.type == "cuda" and not variant.deterministic
            if threads:
                torch.set_num_threads(threads)
            yield
        finally:
            deterministic, warn_only, benchmark, num_threads, rng = saved
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.backends.cudnn.benchmark = benchmark
            torch.set_num_threads(num_threads)
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, device)


class Diverged(Exception):
    """A non-finite training loss: the run stops with status 'diverged'."""


@dataclass
class PassStats:
    loss: float
    acc: float
    images: int
    seconds: float
    skipped_steps: int = 0  # fp16: steps the gradient scaler skipped (overflowing gradients), not divergence


class Trainer:
    """Model, optimizer and schedule of one variant on one device, and its train/eval passes."""

    def __init__(self, variant: Variant, device: torch.device, precision: str | None = None):
        self.variant = variant
        self.device = device
        self.precision = precision or resolve_precision(device, variant.precision)
        torch.manual_seed(variant.seed)  # decides the initial weights
        self.model = create_model(variant).to(device)
        if variant.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if variant.compile else self.model
        self.optimizer = self._optimizer()
        self.plateau = self._plateau()
        self.scheduler = self._scheduler() if self.plateau is None else None
        if self.plateau is not None:
            self._set_plateau_lr(0)
        dtype = AUTOCAST_DTYPES.get(self.precision)
        self.autocast = dict(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
        # fp16 gradients underflow without loss scaling; the scaler skips a step whose scaled gradients overflow and
        # lowers the scale. Disabled, it is a pass-through.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == "fp16")
        self._skipped = torch.zeros((), device=device, dtype=torch.long)

    def _optimizer(self) -> torch.optim.Optimizer:
        v = self.variant
        if v.optimizer == "sgd":
            # timm's "sgd" is always Nesterov; "momentum" is plain SGD with the momentum we give (0 = d2l's SGD).
            opt = "sgd" if v.nesterov else "momentum"
            return create_optimizer_v2(self.model, opt=opt, lr=v.lr, momentum=v.momentum, weight_decay=v.weight_decay)
        return create_optimizer_v2(self.model, opt="adamw", lr=v.lr, weight_decay=v.weight_decay)

    def _plateau(self) -> Plateau | None:
        v = self.variant
        if v.schedule != "plateau":
            return None
        return Plateau(monitor=v.monitor, patience=v.patience, min_delta=v.min_delta, drops=v.drops)

    def _set_plateau_lr(self, epoch: int) -> None:
        """The rate of 0-based `epoch` under the plateau rule: timm's linear warm-up from 1% of lr (as the other
        schedules have it), then lr × gamma per drop so far. It reads the rule's state only, never the run's length."""
        v = self.variant
        if epoch < v.warmup_epochs:
            start = v.lr * WARMUP_START
            lr = start + epoch * (v.lr - start) / v.warmup_epochs
        else:
            lr = v.lr * v.gamma**self.plateau.drops_done
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _scheduler(self):
        v = self.variant
        if v.schedule == "constant" and v.warmup_epochs == 0:
            return None
        sched = {"constant": "step", "cosine": "cosine", "step": "step"}[v.schedule]
        # "constant" with warm-up: a step schedule that never decays.
        decay_epochs = v.epochs + 1 if v.schedule == "constant" else v.step_size
        scheduler, _ = create_scheduler_v2(
            self.optimizer,
            sched=sched,
            num_epochs=v.epochs,
            decay_epochs=decay_epochs,
            decay_rate=v.gamma,
            warmup_epochs=v.warmup_epochs,
            warmup_lr=v.lr * WARMUP_START,
            min_lr=0.0,
        )
        return scheduler

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step; returns (summed loss, correct count) as device tensors, without a host sync."""
        with torch.autocast(**self.autocast):
            logits = self.forward(x)
            loss = F.cross_entropy(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            # Counted on the device (no extra sync): the scaler's overflow flags of this step, read before update()
            # clears them.
            found_inf = self.scaler._found_inf_per_device(self.optimizer)
            if found_inf:
                self._skipped += (sum(found_inf.values()) > 0).long()
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return loss.detach().float() * y.shape[0], (logits.argmax(1) == y).sum()

    def train_epoch(
        self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], epoch: int, bar: tqdm | None = None
    ) -> PassStats:
        torch.manual_seed(epoch_seed(self.variant.seed, epoch, "dropout"))  # dropout masks of this epoch
        self.model.train()
        self._skipped.zero_()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        images, start = 0, time.perf_counter()
        for step, (x, y) in enumerate(batches, 1):
            batch_loss, batch_correct = self.train_step(x, y)
            loss_sum += batch_loss
            correct += batch_correct
            images += y.shape[0]
            if step % DIVERGENCE_CHECK_EVERY == 0 and not torch.isfinite(loss_sum):
                raise Diverged(f"training loss became non-finite in epoch {epoch + 1}, step {step}")
            if bar is not None:
                bar.update(1)
        loss = float(loss_sum) / max(images, 1)  # the epoch's one sync
        if not math.isfinite(loss):
            raise Diverged(f"training loss became non-finite in epoch {epoch + 1}")
        synchronize(self.device)
        seconds = time.perf_counter() - start
        return PassStats(loss, int(correct) / max(images, 1), images, seconds, int(self._skipped))

    @torch.no_grad()
    def evaluate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> PassStats:
        """Eval mode (no dropout): the numbers the overfitting gaps compare."""
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        images, start = 0, time.perf_counter()
        for x, y in batches:
            with torch.autocast(**self.autocast):
                logits = self.forward(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
            images += y.shape[0]
        synchronize(self.device)
        return PassStats(
            float(loss_sum) / max(images, 1), int(correct) / max(images, 1), images, time.perf_counter() - start
        )

    def end_epoch(self, epoch: int, row: Mapping[str, Any]) -> str | None:
        """Sets the next epoch's rate. Under the plateau rule, `row` (the epoch's metrics) feeds its monitor, and the
        rule's DROP or STOP is returned; warm-up epochs feed nothing (their rate is not the one being judged)."""
        if self.plateau is not None:
            event = self.plateau.update(row[self.plateau.monitor]) if epoch >= self.variant.warmup_epochs else None
            self._set_plateau_lr(epoch + 1)
            return event
        if self.scheduler is not None:
            self.scheduler.step(epoch + 1)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            # The rule's best, epochs since it and drops so far; the rate itself is in the optimizer's state.
            "plateau": self.plateau.state_dict() if self.plateau is not None else None,
            "scaler": self.scaler.state_dict(),  # fp16's loss scale and growth count: part of an exact resume
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.plateau is not None and state.get("plateau") is not None:
            self.plateau.load_state_dict(state["plateau"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])


@dataclass(frozen=True)
class TrainOptions:
    """How to run one variant, besides the variant and its directory: where, from what data, what it reports to."""

    device: torch.device
    data: Any = None  # a nin.data.DataTensors the caller loaded (a worker loads each dataset once), or None
    data_dir: str | Path | None = None
    download: bool = False
    tracker: Any = None  # a nin.tracking.Tracker, or None
    progress: bool = True
    progress_position: int = 0
    log: Callable[[str], Any] = print
    tuned: Mapping[str, Any] | None = None


def train(
    variant: Variant,
    run_dir: Path,
    *,
    device: str | torch.device = "auto",
    data=None,
    data_dir: str | Path | None = None,
    download: bool = False,
    tracker=None,
    progress: bool = True,
    progress_position: int = 0,
    log=print,
    threads: int | None = None,
    tuned: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or resume) one variant into run_dir and return its result (also written as result.json).

    `tuned` (e.g. {"lr": 0.002}) names the settings the caller picked for this variant on validation; result.json
    records it so that a report treats them as part of the variant's treatment.

    `data` is a nin.data.DataTensors already loaded by the caller (a worker loads each dataset once); without it the
    dataset is loaded here. A non-finite loss ends the run with status 'diverged'. Other exceptions propagate: the
    caller (runners) records them as status 'failed'.
    """
    torch_device = resolve_device(device) if isinstance(device, str) else device
    prepare_cuda_process(torch_device)
    options = TrainOptions(torch_device, data, data_dir, download, tracker, progress, progress_position, log, tuned)
    with variant_settings(variant, torch_device, threads):
        return _train(variant, Path(run_dir), options)


def _train(variant: Variant, run_dir: Path, options: TrainOptions) -> dict[str, Any]:
    from nin.data import load_dataset
    from nin.pipeline import DeviceData

    torch_device, tracker, log = options.device, options.tracker, options.log
    run_dir.mkdir(parents=True, exist_ok=True)
    store.remove_temp_files(run_dir)
    started = now_iso()
    profile = profile_variant(variant)
    data = options.data
    if data is None:
        data = load_dataset(variant.dataset, options.data_dir, download=options.download)
    device_data = DeviceData.from_variant(data, torch_device, variant)
    trainer = Trainer(variant, torch_device)

    history: list[dict[str, Any]] = []
    first_epoch, prior_seconds, best_test_acc, stop_reason = 0, 0.0, None, None
    checkpoint_path = run_dir / CHECKPOINT_FILE
    if checkpoint_path.exists():
        try:
            state = store.load_checkpoint(checkpoint_path, variant.id)
            trainer.load_state_dict(state["trainer"])
            history, first_epoch = list(state["history"]), int(state["epoch"])
            prior_seconds, best_test_acc = float(state["train_seconds"]), state["best_test_acc"]
            started = state.get("started", started)
            stop_reason = state.get("stop_reason")  # a run killed after its last checkpoint trains no further
            log(f"{variant.id}: resuming after epoch {first_epoch}")
        except store.CorruptCheckpointError as exc:
            log(f"{variant.id}: {exc}; training from scratch")
            trainer = Trainer(variant, torch_device)
            checkpoint_path.unlink(missing_ok=True)
    if tracker is not None:
        tracker.start(variant, profile.as_dict(), resumed=first_epoch > 0)

    train_seconds, status, error = prior_seconds, "ok", None
    eval_train: PassStats | None = None
    test: PassStats | None = None
    running: PassStats | None = None
    n_batches = math.ceil(device_data.n_train / variant.batch_size)
    eval_batch = eval_batch_size(variant.batch_size)
    # Under the plateau rule `epochs` is a cap, so the bar shows "up to".
    of = f"≤{variant.epochs}" if trainer.plateau is not None else str(variant.epochs)
    for epoch in range(first_epoch, variant.epochs if stop_reason is None else first_epoch):
        lr = trainer.lr
        epoch_start = time.perf_counter()
        with tqdm(
            total=n_batches,
            desc=f"{variant.id} epoch {epoch + 1}/{of}",
            unit="batch",
            leave=False,
            disable=None if options.progress else True,
            position=options.progress_position,
            dynamic_ncols=True,
        ) as bar:
            try:
                running = trainer.train_epoch(
                    device_data.train_batches(variant.batch_size, variant.seed, epoch), epoch, bar
                )
            except Diverged as exc:
                status, error = "diverged", str(exc)
                break
        test = trainer.evaluate(device_data.eval_batches("test", eval_batch))
        # The held-out part of the training split, every epoch, by the test set's eval pass (it is a fraction of the
        # training images: a small share of the epoch).
        val = trainer.evaluate(device_data.eval_batches("val", eval_batch)) if device_data.n_val else None
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": running.loss,
            "train_acc": running.acc,
            "test_loss": test.loss,
            "test_acc": test.acc,
            "lr": lr,
        }
        if val is not None:
            row.update(val_loss=val.loss, val_acc=val.acc)
        # The stopping rule reads the epoch's training (or validation) numbers, never the test set's, before the
        # train-set pass: whether this epoch is the last decides that pass.
        event = trainer.end_epoch(epoch, row)
        if event == DROP:
            row["lr_drop"] = True  # the next epoch runs at lr × gamma
        if event == STOP:
            stop_reason = CRITERION
        elif epoch + 1 == variant.epochs:
            stop_reason = CAP if trainer.plateau is not None else BUDGET
        if stop_reason is not None:
            row["stop"] = stop_reason
        eval_train = None
        if evaluates_train_set(epoch + 1, stop_reason is not None, variant.eval_train_every):
            eval_train = trainer.evaluate(device_data.eval_batches("train", eval_batch))
        epoch_seconds = time.perf_counter() - epoch_start
        train_seconds += epoch_seconds
        best_test_acc = max(best_test_acc or 0.0, test.acc)
        row.update(
            epoch_seconds=epoch_seconds,
            load_avg=load_average(),
            images_per_s=running.images / running.seconds if running.seconds > 0 else None,
            skipped_steps=running.skipped_steps,
        )
        if eval_train is not None:
            row.update(
                eval_train_loss=eval_train.loss,
                eval_train_acc=eval_train.acc,
                gap_acc=eval_train.acc - test.acc,
                gap_loss=test.loss - eval_train.loss,
            )
        history.append(row)
        store.save_checkpoint(
            checkpoint_path,
            {
                "variant_id": variant.id,
                "epoch": epoch + 1,
                "trainer": trainer.state_dict(),
                "history": history,
                "train_seconds": train_seconds,
                "best_test_acc": best_test_acc,
                "started": started,
                "stop_reason": stop_reason,
            },
        )
        store.write_metrics(run_dir / METRICS_FILE, history)
        if tracker is not None:
            tracker.log_epoch(row)
        if stop_reason is not None:
            break
        if stop_requested() and epoch + 1 < variant.epochs:
            _stop_requested.clear()  # answered: whatever runs next in this process is not stopped by it
            raise StopAfterEpoch(f"{variant.id}: stopped after epoch {epoch + 1}, its checkpoint is written")

    localisation, cam_file = None, None
    if status == "ok" and variant.canvas is not None:  # also on a resume that found every epoch done
        localisation, cam_file = _localise(trainer.model, device_data, eval_batch, run_dir)
    outcome = RunOutcome(
        status=status,
        error=error,
        train_seconds=train_seconds,
        best_test_acc=best_test_acc,
        device=torch_device,
        precision=trainer.precision,
        started=started,
        n_train=device_data.n_train,
        n_test=device_data.n_test,
        n_val=device_data.n_val,
        localisation=localisation,
        tuned=options.tuned,
    )
    result = build_result(variant, profile.as_dict(), history, outcome)
    store.write_json(run_dir / RESULT_FILE, result)
    if tracker is not None:
        tracker.finish(result, cam_file=cam_file)
    return result


def _localise(model: torch.nn.Module, device_data, batch_size: int, run_dir: Path) -> tuple[dict[str, Any], Path]:
    """Class maps of the trained net on the canvas test split: the loc_* outcomes, and cam.npz for the figure."""
    from nin.cam import measure_localisation, write_cam_file

    outcomes, arrays = measure_localisation(model, device_data, batch_size)
    cam_file = run_dir / CAM_FILE
    write_cam_file(cam_file, arrays)
    return outcomes, cam_file
