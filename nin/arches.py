"""NiN architecture presets and their shape arithmetic, without torch (grid validation uses them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

# The variant space: every name below is declared here once; nin.variant, nin.models, the CLI and the tests derive
# their choices from these. Adding an arch preset is one entry in ARCHES (plus its test).
MODELS = ("nin", "alexnet")  # alexnet: d2l's AlexNet, the reference row
HEADS = ("gap", "fc", "alexnet")
CCCP_CHOICES = (0, 1, 2)
INIT_SCHEMES = ("xavier", "kaiming", "default")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # auto: nin.device.resolve_precision picks per device
ALEXNET_HIDDEN = 4096
ALEXNET_INPUT_SIZE = 224  # d2l resizes Fashion-MNIST to 224 for its AlexNet


@dataclass(frozen=True)
class ConvSpec:
    """A NiN block: one k×k conv, then up to len(cccp_widths) 1×1 'cccp' convs, each followed by ReLU."""

    out: int
    kernel: int
    stride: int = 1
    padding: int = 0
    cccp_widths: tuple[int, ...] = ()


@dataclass(frozen=True)
class PoolSpec:
    kind: str  # "max" or "avg"
    kernel: int = 3
    stride: int = 2
    ceil_mode: bool = False


@dataclass(frozen=True)
class ArchPreset:
    name: str
    input_size: int
    trunk: tuple[ConvSpec | PoolSpec | str, ...]  # "dropout" marks a dropout slot
    # The GAP head is a final NiN block; None in a width means "the class count".
    gap_block: ConvSpec = field(default_factory=lambda: ConvSpec(out=0, kernel=3, padding=1))
    gap_widths: tuple[int | None, ...] = (None, None, None)
    dropout_p: float = 0.5


ARCHES: dict[str, ArchPreset] = {
    # The seeds' NiN (d2l 8.3): 224×224 input, dropout before the last NiN block, GAP over the class maps.
    "d2l": ArchPreset(
        name="d2l",
        input_size=224,
        trunk=(
            ConvSpec(96, 11, 4, 0, (96, 96)),
            PoolSpec("max"),
            ConvSpec(256, 5, 1, 2, (256, 256)),
            PoolSpec("max"),
            ConvSpec(384, 3, 1, 1, (384, 384)),
            PoolSpec("max"),
            "dropout",
        ),
        gap_block=ConvSpec(0, 3, 1, 1),
        gap_widths=(None, None, None),
    ),
    # The NiN paper's CIFAR-10 net (Caffe pools round up, hence ceil_mode).
    "cifar": ArchPreset(
        name="cifar",
        input_size=32,
        trunk=(
            ConvSpec(192, 5, 1, 2, (160, 96)),
            PoolSpec("max", ceil_mode=True),
            "dropout",
            ConvSpec(192, 5, 1, 2, (192, 192)),
            PoolSpec("avg", ceil_mode=True),
            "dropout",
        ),
        gap_block=ConvSpec(0, 3, 1, 1),
        gap_widths=(192, 192, None),
    ),
}


def scaled(channels: int, width: float) -> int:
    """Hidden channel count under the width multiplier (never below 1)."""
    return max(1, int(round(channels * width)))


def _out_size(size: int, kernel: int, stride: int, padding: int, ceil_mode: bool) -> int:
    span = size + 2 * padding - kernel
    if span < 0:
        return 0
    steps = math.ceil(span / stride) if ceil_mode else span // stride
    if ceil_mode and steps * stride >= size + padding:  # PyTorch drops a last window that starts in padding
        steps -= 1
    return steps + 1


def spatial_after(layers: Sequence[ConvSpec | PoolSpec | str], size: int) -> int:
    for layer in layers:
        if isinstance(layer, ConvSpec):
            size = _out_size(size, layer.kernel, layer.stride, layer.padding, False)
        elif isinstance(layer, PoolSpec):
            size = _out_size(size, layer.kernel, layer.stride, 0, layer.ceil_mode)
        if size < 1:
            return 0
    return size


def smallest_input(layers: Sequence[ConvSpec | PoolSpec | str]) -> int:
    """The smallest square input for which every layer still has at least one output pixel."""
    size = 1
    while spatial_after(layers, size) < 1:
        size += 1
    return size


ALEXNET_TRUNK: tuple[ConvSpec | PoolSpec | str, ...] = (
    ConvSpec(96, 11, 4, 1),
    PoolSpec("max"),
    ConvSpec(256, 5, 1, 2),
    PoolSpec("max"),
    ConvSpec(384, 3, 1, 1),
    ConvSpec(384, 3, 1, 1),
    ConvSpec(256, 3, 1, 1),
    PoolSpec("max"),
)


def default_input_size(model: str, arch: str | None) -> int:
    """The input size a variant gets when its grid names none: the arch's (or AlexNet's) own."""
    return ALEXNET_INPUT_SIZE if model == "alexnet" else ARCHES[str(arch)].input_size


def smallest_input_for(model: str, arch: str | None, head: str | None) -> int:
    """Smallest square input the network accepts: every layer keeps at least one output pixel."""
    if model == "alexnet":
        return smallest_input(ALEXNET_TRUNK)
    preset = ARCHES[str(arch)]
    if head == "gap":
        gap = preset.gap_block
        return smallest_input((*preset.trunk, ConvSpec(1, gap.kernel, gap.stride, gap.padding)))
    return smallest_input(preset.trunk)
