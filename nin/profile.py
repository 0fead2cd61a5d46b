"""Parameters and fvcore MACs of a model at its input size.

fvcore counts one multiply-add as one "flop"; we report that number as `macs` and `flops = 2 × macs`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class Profile:
    params: int
    trainable_params: int
    trunk_params: int
    head_params: int
    macs: int
    flops: int
    input_shape: tuple[int, int, int]
    unsupported_ops: dict[str, int] = field(default_factory=dict)  # ops fvcore could not count, with call counts

    def as_dict(self) -> dict:
        return asdict(self)


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def profile_model(model: nn.Module, in_channels: int, image_size: int) -> Profile:
    """Count parameters and forward MACs for one image of shape (in_channels, image_size, image_size)."""
    with warnings.catch_warnings():  # fvcore.nn scripts a loss function at import, which torch deprecates
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    example = torch.zeros(1, in_channels, image_size, image_size)
    # fvcore logs every op it skips; we collect them instead and list them in the profile.
    fvcore_logger = logging.getLogger("fvcore")
    previous_level = fvcore_logger.level
    fvcore_logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, (example,))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            macs = int(analysis.total())
            unsupported = dict(analysis.unsupported_ops())
    finally:
        fvcore_logger.setLevel(previous_level)
        model.train(was_training)
    trunk = getattr(model, "trunk", None)
    head = getattr(model, "head", None)
    return Profile(
        params=count_params(model),
        trainable_params=count_params(model, trainable_only=True),
        trunk_params=count_params(trunk) if trunk is not None else 0,
        head_params=count_params(head) if head is not None else 0,
        macs=macs,
        flops=2 * macs,
        input_shape=(in_channels, image_size, image_size),
        unsupported_ops=unsupported,
    )


def profile_variant(variant) -> Profile:
    """Profile of the network a Variant describes; cached by architecture (seeds and lrs share it)."""
    key = variant.architecture_key()
    if key not in _PROFILES:
        from nin.models import create_model

        model = create_model(variant.model_copy(update={"init": "default"}))  # init changes no count
        _PROFILES[key] = profile_model(model, variant.in_channels, variant.image_size)
    return _PROFILES[key]


_PROFILES: dict[tuple, Profile] = {}
