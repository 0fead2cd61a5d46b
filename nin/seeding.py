"""The one seed derivation: every random stream of an epoch is seeded from (seed, epoch) alone.

A run resumed at any epoch therefore draws exactly what an uninterrupted run draws, on every device.
"""

from __future__ import annotations

import numpy as np

SEED_STREAMS = ("data", "dropout")  # batch order and augmentation draws; dropout masks


def epoch_seed(seed: int, epoch: int, stream: str) -> int:
    """A 64-bit seed for one stream of one epoch: independent words of one SeedSequence([seed, epoch])."""
    words = np.random.SeedSequence([seed, epoch]).generate_state(len(SEED_STREAMS), dtype=np.uint64)
    return int(words[SEED_STREAMS.index(stream)])
