"""Network-in-Network and its ablations, built from one block builder.

Every variant is `trunk` (NiN blocks with pools and dropout) followed by `head` (gap, fc or alexnet).
The AlexNet reference (d2l's) is built the same way so that profiling and reporting treat it alike.
The models are also registered in timm (`timm.create_model("nin_d2l", head="gap", cccp=2, ...)`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nin._timm import register_model, timm
from nin.arches import (
    ALEXNET_HIDDEN,
    ALEXNET_INPUT_SIZE,
    ALEXNET_TRUNK,
    ARCHES,
    CCCP_CHOICES,
    HEADS,
    INIT_SCHEMES,
    ConvSpec,
    PoolSpec,
    scaled,
    smallest_input_for,
    spatial_after,
)
from nin.errors import InputError


def nin_block(
    in_channels: int, widths: Sequence[int], kernel: int, stride: int, padding: int, final_relu: bool = True
) -> nn.Sequential:
    """conv k×k → ReLU, then one 1×1 conv → ReLU per remaining width. The one block builder for every variant."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], kernel, stride, padding), nn.ReLU(inplace=True)]
    for prev, width in zip(widths[:-1], widths[1:]):
        layers += [nn.Conv2d(prev, width, kernel_size=1), nn.ReLU(inplace=True)]
    if not final_relu:
        layers.pop()
    return nn.Sequential(*layers)


def _pool(spec: PoolSpec) -> nn.Module:
    if spec.kind == "max":
        return nn.MaxPool2d(spec.kernel, spec.stride, ceil_mode=spec.ceil_mode)
    return nn.AvgPool2d(spec.kernel, spec.stride, ceil_mode=spec.ceil_mode)


class TooSmallInputError(InputError):
    pass


class Net(nn.Module):
    """trunk → head, with the input-size check that turns a shape error deep in the net into a clear message."""

    def __init__(self, trunk: nn.Module, head: nn.Module, name: str, min_size: int, fixed_size: int | None):
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.arch_name = name
        self.min_size = min_size
        self.fixed_size = fixed_size  # FC heads are tied to the size they were built for

    def check_input(self, height: int, width: int) -> None:
        if min(height, width) < self.min_size:
            raise TooSmallInputError(
                f"input {height}×{width} is too small for {self.arch_name}: the smallest size that works is "
                f"{self.min_size}×{self.min_size}"
            )
        if self.fixed_size is not None and (height, width) != (self.fixed_size, self.fixed_size):
            raise ValueError(
                f"{self.arch_name} has a flatten+linear head built for {self.fixed_size}×{self.fixed_size} "
                f"inputs, got {height}×{width}; build it with image_size={height}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x.shape[-2], x.shape[-1])
        return self.head(self.trunk(x))


def _alexnet_classifier(features: int, classes: int, hidden: int, dropout: bool, p: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for fan_in in (features, hidden):
        layers += [nn.Linear(fan_in, hidden), nn.ReLU(inplace=True)]
        if dropout:
            layers.append(nn.Dropout(p))
    layers.append(nn.Linear(hidden, classes))
    return nn.Sequential(*layers)


def init_weights(model: nn.Module, scheme: str = "xavier") -> nn.Module:
    """Weights of every conv and linear layer: 'xavier' (uniform, as d2l trains NiN), 'kaiming' (He uniform for
    ReLU nets: keeps activation scale through depth), or 'default' (PyTorch's own). Biases keep PyTorch's init."""
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {scheme!r}")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(module.weight)
            elif scheme == "kaiming":
                nn.init.kaiming_uniform_(module.weight, nonlinearity="relu")
    return model


def build_nin(
    arch: str = "d2l",
    head: str = "gap",
    cccp: int = 2,
    dropout: bool = True,
    width: float = 1.0,
    in_chans: int = 1,
    num_classes: int = 10,
    image_size: int | None = None,
    init: str = "xavier",
    gap_relu: bool = True,
) -> Net:
    """The one entry that builds every NiN variant. gap_relu=False drops the ReLU on the class maps before GAP."""
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {', '.join(ARCHES)}, got {arch!r}")
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
    if cccp not in CCCP_CHOICES:
        raise ValueError(f"cccp must be one of 0, 1, 2, got {cccp!r}")
    preset = ARCHES[arch]
    size = image_size or preset.input_size

    trunk: list[nn.Module] = []
    channels = in_chans
    for layer in preset.trunk:
        if isinstance(layer, ConvSpec):
            widths = [scaled(w, width) for w in (layer.out, *layer.cccp_widths[:cccp])]
            trunk.append(nin_block(channels, widths, layer.kernel, layer.stride, layer.padding))
            channels = widths[-1]
        elif isinstance(layer, PoolSpec):
            trunk.append(_pool(layer))
        elif dropout:
            trunk.append(nn.Dropout(preset.dropout_p))

    gap = preset.gap_block
    min_size = smallest_input_for("nin", arch, head)
    if size < min_size:
        raise TooSmallInputError(
            f"image_size {size} is too small for arch {arch} with head {head}: the smallest size that works is "
            f"{min_size}"
        )

    if head == "gap":
        # A GAP block keeps its first cccp widths and always ends in the class count.
        hidden = [num_classes if w is None else scaled(w, width) for w in preset.gap_widths[:cccp]]
        widths = [*hidden, num_classes]
        head_module: nn.Module = nn.Sequential(
            nin_block(channels, widths, gap.kernel, gap.stride, gap.padding, final_relu=gap_relu),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        fixed = None
    else:
        features = channels * spatial_after(preset.trunk, size) ** 2
        if head == "fc":
            head_module = nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))
        else:
            hidden_units = scaled(ALEXNET_HIDDEN, width)
            head_module = _alexnet_classifier(features, num_classes, hidden_units, dropout, preset.dropout_p)
        fixed = size
    name = f"nin_{arch} (head={head}, cccp={cccp})"
    return init_weights(Net(nn.Sequential(*trunk), head_module, name, min_size, fixed), init)


def build_alexnet(
    dropout: bool = True,
    width: float = 1.0,
    in_chans: int = 1,
    num_classes: int = 10,
    image_size: int | None = None,
    init: str = "xavier",
) -> Net:
    """d2l's AlexNet (section 8.1), the reference row: five convs, three pools, three linear layers."""
    size = image_size or ALEXNET_INPUT_SIZE
    min_size = smallest_input_for("alexnet", None, None)
    if size < min_size:
        raise TooSmallInputError(
            f"image_size {size} is too small for the AlexNet reference: the smallest size that works is {min_size}"
        )
    trunk: list[nn.Module] = []
    channels = in_chans
    for layer in ALEXNET_TRUNK:
        if isinstance(layer, ConvSpec):
            out = scaled(layer.out, width)
            trunk.append(nin_block(channels, [out], layer.kernel, layer.stride, layer.padding))
            channels = out
        else:
            trunk.append(_pool(layer))
    features = channels * spatial_after(ALEXNET_TRUNK, size) ** 2
    head = _alexnet_classifier(features, num_classes, scaled(ALEXNET_HIDDEN, width), dropout, 0.5)
    return init_weights(Net(nn.Sequential(*trunk), head, "alexnet_d2l", min_size, size), init)


def _timm_kwargs(kwargs: dict) -> dict:
    """timm passes its own pretrained-config keys to every entry point; ours take none of them."""
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "features_only"):
        kwargs.pop(key, None)
    return kwargs


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights: nin-ablate trains every variant from scratch")


def _register_nin(arch: str) -> None:
    """timm entry `nin_<arch>` for every preset in nin.arches.ARCHES: a new preset needs no code here."""
    preset = ARCHES[arch]

    def entry(pretrained: bool = False, **kwargs) -> Net:
        _no_pretrained(f"nin_{arch}", pretrained)
        return build_nin(arch=arch, **_timm_kwargs(kwargs))

    entry.__name__ = entry.__qualname__ = f"nin_{arch}"
    entry.__doc__ = (
        f"NiN preset '{arch}' at {preset.input_size}x{preset.input_size}: head gap|fc|alexnet, cccp 0|1|2, "
        f"dropout, width, gap_relu, init."
    )
    globals()[entry.__name__] = register_model(entry)


for _arch in ARCHES:
    _register_nin(_arch)


@register_model
def alexnet_d2l(pretrained: bool = False, **kwargs) -> Net:
    """d2l's AlexNet, the reference row of every ablation grid."""
    _no_pretrained("alexnet_d2l", pretrained)
    return build_alexnet(**_timm_kwargs(kwargs))


def create_model(variant) -> Net:  # variant: nin.variant.Variant (not imported: models stay grid-agnostic)
    """Build the network a Variant describes through timm's registry, exactly as a user would with
    `timm.create_model(variant.timm_name, **variant.model_kwargs())` (seed the RNG first for reproducible weights)."""
    return timm.create_model(variant.timm_name, **variant.model_kwargs())
