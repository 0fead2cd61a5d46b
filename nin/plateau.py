"""The NiN paper's stopping rule (Lin et al. 2013, §4.1) as a learning-rate schedule: train at a constant rate until
the monitored training metric stops improving, lower the rate (×gamma, 0.1 in the paper) and repeat; after `drops`
drops a further plateau ends the run ("criterion"), and the epoch cap (the variant's `epochs`) ends it otherwise
("cap"). Nothing here needs the run's length in advance, and the whole state is a few numbers that a checkpoint
carries, so that a resumed run takes the same decisions. Imports no torch.

"No improvement" is Prechelt's (1998) patience criterion: `patience` consecutive epochs whose value does not beat
the best so far by more than `min_delta`. The best survives a drop (a new rate must beat what the old one reached),
and the count restarts after each drop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MONITORS = ("train_acc", "train_loss", "val_acc", "val_loss")  # metrics.jsonl keys of the epoch's row
# Filled in for schedule "plateau" where the grid leaves them out (nin.variant): the paper's rule, on the training
# pass's running accuracy (free: no extra pass), three epochs without a new best, two tenfold drops.
PLATEAU_DEFAULTS: dict[str, Any] = {"monitor": "train_acc", "patience": 3, "min_delta": 0.0, "drops": 2}
PLATEAU_FIELDS = tuple(PLATEAU_DEFAULTS)
# Why a run ended (result.json `stop_reason`, the last metrics.jsonl row's `stop`): the stopping rule's criterion,
# the epoch cap of a plateau run, or the fixed budget of any other schedule.
CRITERION, CAP, BUDGET = "criterion", "cap", "epochs"
DROP, STOP = "drop", "stop"  # what one epoch's value makes the rule do


def higher_is_better(monitor: str) -> bool:
    return monitor.endswith("_acc")


@dataclass
class Plateau:
    """The rule's state. `update(value)` after each epoch (warm-up epochs excluded) returns DROP, STOP or None."""

    monitor: str
    patience: int
    min_delta: float
    drops: int
    best: float | None = None
    bad_epochs: int = 0  # consecutive epochs without a new best, since the best or the last drop
    drops_done: int = 0

    def improves(self, value: float) -> bool:
        if self.best is None:
            return True
        if higher_is_better(self.monitor):
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def update(self, value: float) -> str | None:
        if self.improves(value):
            self.best, self.bad_epochs = value, 0
            return None
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return None
        self.bad_epochs = 0
        if self.drops_done >= self.drops:
            return STOP
        self.drops_done += 1
        return DROP

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
