"""Weights & Biases tracking: one W&B run per variant, offline by default, never in the way of training.

wandb is imported lazily, inside `start`, so `--wandb disabled` never loads it. Any W&B failure (no wandb, no
network, a bad key, an error while logging) prints one warning line and turns the tracker into a no-op.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nin.errors import InputError

if TYPE_CHECKING:
    from nin.variant import Variant

MODES = ("offline", "online", "disabled")
_MODE_ALIASES = {"dryrun": "offline", "run": "online"}  # older spellings wandb itself still accepts in WANDB_MODE
DEFAULT_PROJECT = "nin-ablate"
INIT_TIMEOUT_S = 20.0  # an unreachable server costs this much per run, not wandb's default 90 s

# metrics.jsonl key -> W&B key. Slashes put train/test/gap in their own panel sections in the W&B UI.
EPOCH_KEYS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "test_loss": "test/loss",
    "test_acc": "test/acc",
    "val_loss": "val/loss",  # with a validation hold-out
    "val_acc": "val/acc",
    "eval_train_loss": "train_eval/loss",
    "eval_train_acc": "train_eval/acc",
    "gap_acc": "gap/acc",
    "gap_loss": "gap/loss",
}


# Draws one run's row of the class-map figure from its cam.npz, labelled: an RGB uint8 array [H, W, 3].
CamImage = Callable[[Path, str], Any]


class Tracker(Protocol):
    def start(self, variant: Variant, profile: Mapping[str, Any], resumed: bool) -> None: ...

    def log_epoch(self, metrics: Mapping[str, Any]) -> None: ...

    def finish(self, result: Mapping[str, Any], cam_file: Path | None = None) -> None: ...


class NullTracker:
    """Tracking disabled: every call does nothing."""

    def start(self, variant: Variant, profile: Mapping[str, Any], resumed: bool) -> None:
        pass

    def log_epoch(self, metrics: Mapping[str, Any]) -> None:
        pass

    def finish(self, result: Mapping[str, Any], cam_file: Path | None = None) -> None:
        pass


def resolve_mode(mode: str | None) -> str:
    """An explicit mode wins over WANDB_MODE; with neither, offline."""
    source = "--wandb"
    if mode is None:
        mode, source = os.environ.get("WANDB_MODE") or "offline", "WANDB_MODE"
    value = mode.strip().lower()
    value = _MODE_ALIASES.get(value, value)
    if value not in MODES:
        raise InputError(f"{source} {mode!r} is not a W&B mode: use offline, online or disabled")
    return value


@dataclass(frozen=True)
class WandbTarget:
    """Where runs go and how wandb is set up for them (shared by the per-variant runs and the report run)."""

    mode: str
    dir: Path
    group: str
    project: str
    entity: str | None
    init_timeout: float

    def init(self, wandb: Any, **run_kwargs: Any) -> Any:
        """wandb.init for one run in this target's group; raises whatever wandb raises."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with _no_login_prompt():
            return wandb.init(
                mode=self.mode,
                dir=str(self.dir),
                project=self.project,
                entity=self.entity,
                group=self.group,
                settings=self._settings(wandb),
                **run_kwargs,
            )

    def _settings(self, wandb: Any) -> Any:
        # Quiet and light: no console capture, code, git, requirements, system metrics or host metadata;
        # only settings the installed wandb knows are passed, so a renamed private field degrades, not fails.
        wanted: dict[str, Any] = dict(
            console="off",
            save_code=False,
            disable_code=True,
            disable_git=True,
            disable_job_creation=True,
            x_disable_stats=True,
            x_disable_meta=True,
            x_disable_machine_info=True,
            x_save_requirements=False,
            reinit="create_new",  # several variants may track at once in one process
        )
        # Offline there is nothing to show before `wandb sync` (the README says how). Online, quiet keeps wandb's
        # essentials and skips its user-name lookup, which alone costs ~16 s when the server is unreachable.
        wanted["silent" if self.mode == "offline" else "quiet"] = True
        if "WANDB_INIT_TIMEOUT" not in os.environ:
            wanted["init_timeout"] = self.init_timeout
        fields = getattr(wandb.Settings, "model_fields", {})
        return wandb.Settings(**{key: value for key, value in wanted.items() if key in fields})


def wandb_target(
    mode: str | None,
    wandb_dir: Path,
    group: str,
    project: str | None = None,
    entity: str | None = None,
    init_timeout: float = INIT_TIMEOUT_S,
) -> WandbTarget | None:
    """None when tracking is disabled. Flags win; WANDB_PROJECT, WANDB_ENTITY and WANDB_DIR fill what they leave."""
    resolved = resolve_mode(mode)
    if resolved == "disabled":
        return None
    return WandbTarget(
        mode=resolved,
        dir=Path(os.environ.get("WANDB_DIR") or wandb_dir),
        group=group,
        project=project or os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
        entity=entity or os.environ.get("WANDB_ENTITY") or None,
        init_timeout=init_timeout,
    )


def make_tracker(
    mode: str | None,
    wandb_dir: Path,
    group: str,
    project: str | None = None,
    entity: str | None = None,
    init_timeout: float = INIT_TIMEOUT_S,
    cam_image: CamImage | None = None,
) -> Tracker:
    """NullTracker for mode "disabled" (wandb is never imported), else a WandbTracker. None means WANDB_MODE.
    `cam_image(cam_file, label)` draws a run's row of the class-map figure (the runner passes the report's drawing:
    nin draws nothing itself)."""
    target = wandb_target(mode, wandb_dir, group, project, entity, init_timeout)
    return NullTracker() if target is None else WandbTracker(target, cam_image)


class WandbTracker:
    """One W&B run per variant: id and name = variant.id, group = grid name. Reusable for variant after variant."""

    def __init__(self, target: WandbTarget, cam_image: CamImage | None = None) -> None:
        self.target = target
        self.cam_image = cam_image
        self._run: Any = None
        self._variant_id = "?"

    def start(self, variant: Variant, profile: Mapping[str, Any], resumed: bool) -> None:
        if self._run is not None:  # the last variant never reached finish (interrupted): close it as failed
            with suppress(Exception):
                self._run.finish(exit_code=1)
            self._run = None
        self._variant_id = variant.id
        try:
            import wandb

            run = self.target.init(
                wandb,
                id=variant.id,
                name=variant.id,
                job_type="train",
                config=run_config(variant, profile, self.target.group),
                resume="allow" if resumed else None,  # a resumed variant continues its own run, not a second one
            )
            run.define_metric("epoch")
            run.define_metric("*", step_metric="epoch")
            self._run = run
        except Exception as error:
            self._off(error)

    def log_epoch(self, metrics: Mapping[str, Any]) -> None:
        if self._run is None:
            return
        try:
            epoch = metrics.get("epoch")
            # step = epoch keeps a resumed run's history in order, offline as online.
            self._run.log(epoch_row(metrics), step=None if epoch is None else int(epoch))
        except Exception as error:
            self._off(error)

    def finish(self, result: Mapping[str, Any], cam_file: Path | None = None) -> None:
        """Close the run with result.json's scalars; with `cam_file` (the run's cam.npz), its row of the class-map
        figure as the image class_maps."""
        run, self._run = self._run, None
        if run is None:
            return
        if cam_file is not None and self.cam_image is not None:
            try:
                import wandb

                run.log({"class_maps": wandb.Image(self.cam_image(cam_file, str(result.get("variant_id", ""))))})
            except Exception as error:  # one warning line; the run still gets its summary
                tracking_off(f"W&B class-map image off for {self._variant_id}", error, None, "the run is kept")
        try:
            status = str(result.get("status", "unknown"))
            run.summary.update(result_summary(result))
            run.tags = (status,)
            run.finish(exit_code=1 if status == "failed" else 0)
        except Exception as error:
            self._run = run
            self._off(error)

    def _off(self, error: BaseException) -> None:
        run, self._run = self._run, None
        tracking_off(f"W&B tracking off for {self._variant_id}", error, run, "training continues")


def tracking_off(what: str, error: BaseException, run: Any, tail: str) -> None:
    """The one warning line; close the run as failed if it got that far, ignoring any further error."""
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0].rstrip('.')}" if lines else type(error).__name__
    key = os.environ.get("WANDB_API_KEY")
    if key:
        reason = reason.replace(key, "***")
    print(f"nin-ablate: {what}: {reason}; {tail}", file=sys.stderr, flush=True)
    if run is not None:
        with suppress(Exception):
            run.finish(exit_code=1)


_STDIN_LOCK = threading.Lock()


@contextmanager
def _no_login_prompt() -> Iterator[None]:
    # Without a key, wandb.init asks for one on a terminal and waits for an answer, stalling the grid. Without a
    # terminal on stdin it raises "No API key configured" instead, which turns tracking off with one warning.
    with _STDIN_LOCK:  # sys.stdin is process-wide: one swap at a time, or a racing thread could keep the stand-in
        saved, sys.stdin = sys.stdin, io.StringIO()
        try:
            yield
        finally:
            sys.stdin = saved


def run_config(variant: Variant, profile: Mapping[str, Any], group: str) -> dict[str, Any]:
    """Every Variant field as a flat key, the profile's counts, and the ids. Never the environment or settings."""
    config = variant.config()
    config.update({key: value for key, value in profile.items() if _is_number(value)})
    config.update(variant_id=variant.id, group_id=variant.group_id, grid=group)
    return config


def epoch_row(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One metrics.jsonl line as W&B keys; absent or non-numeric values are left out."""
    return {EPOCH_KEYS.get(key, key): value for key, value in metrics.items() if _is_number(value)}


def result_summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """result.json's scalars; nested dicts (axes, versions) one level down as "axes/head", "versions/torch"; a list
    of numbers (lr_drop_epochs) as one text value."""
    summary: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, Mapping):
            summary.update({f"{key}/{sub}": v for sub, v in value.items() if _is_scalar(v)})
        elif _is_scalar(value):
            summary[key] = value
        elif isinstance(value, list) and all(_is_number(v) for v in value):
            summary[key] = " ".join(str(v) for v in value)  # e.g. lr_drop_epochs, as results.csv shows it
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str))
