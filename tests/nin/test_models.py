"""The variant space: exact parameter counts, forward shapes, size limits, timm registry, MACs."""

from __future__ import annotations

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

from nin.arches import smallest_input_for
from nin.models import TooSmallInputError, build_alexnet, build_nin, create_model
from nin.profile import profile_variant
from nin.variant import Variant
from runners.spec import load_grid
from tests.conftest import REPO

EXACT_PARAMS = [
    (dict(arch="d2l", head="gap", cccp=2), 1_992_166),
    (dict(arch="d2l", head="gap", cccp=0), 1_546_058),
    (dict(arch="d2l", head="fc", cccp=2), 2_053_386),
    (dict(arch="d2l", head="alexnet", cccp=2), 58_105_354),
]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("dropout", [True, False])
@pytest.mark.parametrize(("kwargs", "expected"), EXACT_PARAMS)
def test_d2l_parameter_counts_match_design(kwargs, expected, dropout):
    assert n_params(build_nin(**kwargs, dropout=dropout, in_chans=1, num_classes=10)) == expected


@pytest.mark.parametrize("dropout", [True, False])
def test_alexnet_reference_parameter_count(dropout):
    assert n_params(build_alexnet(dropout=dropout, in_chans=1, num_classes=10)) == 46_764_746


def test_cifar_paper_net_parameter_count():
    model = build_nin(arch="cifar", head="gap", cccp=2, in_chans=3, num_classes=10)
    assert n_params(model) == 966_986


def test_seed_nin_matches_d2l_layer_by_layer():
    model = build_nin(arch="d2l", head="gap", cccp=2)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    shapes = [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs]
    assert shapes == [
        (1, 96, 11, 4, 0), (96, 96, 1, 1, 0), (96, 96, 1, 1, 0),
        (96, 256, 5, 1, 2), (256, 256, 1, 1, 0), (256, 256, 1, 1, 0),
        (256, 384, 3, 1, 1), (384, 384, 1, 1, 0), (384, 384, 1, 1, 0),
        (384, 10, 3, 1, 1), (10, 10, 1, 1, 0), (10, 10, 1, 1, 0),
    ]  # fmt: skip
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 1
    assert sum(isinstance(m, torch.nn.Dropout) for m in build_nin(dropout=False).modules()) == 0


def test_cccp_zero_means_plain_conv_blocks():
    model = build_nin(arch="d2l", head="gap", cccp=0)
    assert not any(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())


def test_dropout_covers_trunk_and_alexnet_head():
    with_dropout = build_nin(head="alexnet", dropout=True)
    assert sum(isinstance(m, torch.nn.Dropout) for m in with_dropout.modules()) == 3
    assert sum(isinstance(m, torch.nn.Dropout) for m in build_nin(head="alexnet", dropout=False).modules()) == 0


def test_width_scales_hidden_channels_not_classes_or_input():
    model = build_nin(arch="cifar", width=0.25, in_chans=3, num_classes=7)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 3 and convs[0].out_channels == 48
    assert convs[-1].out_channels == 7


def test_xavier_init_is_default_and_seeded():
    torch.manual_seed(0)
    a = build_nin(arch="cifar", width=0.25)
    torch.manual_seed(0)
    b = build_nin(arch="cifar", width=0.25)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    conv = a.trunk[0][0]
    bound = (6 / (conv.in_channels * 25 + conv.out_channels * 25)) ** 0.5
    assert conv.weight.abs().max() <= bound
    assert conv.weight.abs().max() > 0.9 * bound  # uniform over the whole xavier range, not PyTorch's default


@pytest.mark.parametrize("head", ["gap", "fc", "alexnet"])
@pytest.mark.parametrize("cccp", [0, 1, 2])
@pytest.mark.parametrize(("arch", "channels", "sizes"), [("d2l", 1, [224, 96]), ("cifar", 3, [32, 48])])
def test_every_variant_forwards_at_arch_size_and_other_sizes(arch, channels, sizes, head, cccp):
    for size in sizes:
        model = build_nin(arch=arch, head=head, cccp=cccp, width=0.125, in_chans=channels, num_classes=5,
                          image_size=size).eval()  # fmt: skip
        with torch.no_grad():
            out = model(torch.randn(2, channels, size, size))
        assert out.shape == (2, 5)


def test_gap_head_accepts_any_valid_size_after_build():
    model = build_nin(arch="cifar", head="gap", width=0.125, in_chans=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 10)


@pytest.mark.parametrize(("model_name", "arch", "head"), [("nin", "d2l", "gap"), ("nin", "d2l", "fc"),
                                                          ("nin", "cifar", "gap"), ("alexnet", None, None)])
def test_too_small_input_is_refused_with_the_smallest_size(model_name, arch, head):
    smallest = smallest_input_for(model_name, arch, head)
    build = build_alexnet if model_name == "alexnet" else build_nin
    kwargs = {} if model_name == "alexnet" else dict(arch=arch, head=head)
    build(**kwargs, width=0.125, image_size=smallest)  # the smallest works
    with pytest.raises(TooSmallInputError, match=f"smallest size that works is {smallest}"):
        build(**kwargs, width=0.125, image_size=smallest - 1)


def test_too_small_input_at_forward_time_is_a_clear_error():
    model = build_nin(arch="d2l", head="gap", width=0.125)
    smallest = smallest_input_for("nin", "d2l", "gap")
    with pytest.raises(TooSmallInputError, match=f"{smallest}×{smallest}"):
        model(torch.randn(1, 1, smallest - 1, smallest - 1))


def _paper_variants() -> list[Variant]:
    grid = load_grid(REPO / "ablations" / "paper.yaml")
    seen, unique = set(), []
    for variant in grid.variants:
        if variant.architecture_key() not in seen:
            seen.add(variant.architecture_key())
            unique.append(variant)
    return unique


def test_timm_registry_finds_and_builds_every_variant_exactly():
    assert {"nin_d2l", "nin_cifar"} <= set(timm.list_models("nin*"))
    assert "alexnet_d2l" in timm.list_models("alexnet*")
    for variant in _paper_variants():
        torch.manual_seed(1)
        ours = create_model(variant)
        torch.manual_seed(1)
        theirs = timm.create_model(variant.timm_name, **variant.model_kwargs())
        assert str(ours) == str(theirs)
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("nin_d2l", pretrained=True)


def test_fvcore_macs_agree_with_torch_flop_counter_for_every_paper_variant():
    assert len(_paper_variants()) == 19
    for variant in _paper_variants():
        model = create_model(variant).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros(1, variant.in_channels, variant.image_size, variant.image_size))
        independent_macs = counter.get_total_flops() / 2
        profile = profile_variant(variant)
        assert profile.macs == pytest.approx(independent_macs, rel=0.01), variant.id
        assert profile.flops == 2 * profile.macs
        assert profile.trunk_params + profile.head_params == profile.params


def test_seed_nin_profile():
    profile = profile_variant(Variant(arch="d2l", head="gap", cccp=2))
    assert profile.params == 1_992_166
    assert profile.macs / 1e9 == pytest.approx(0.762, abs=0.001)
    assert "aten::max_pool2d" in profile.unsupported_ops  # listed, not silently dropped


def test_kaiming_init_keeps_activation_scale_through_depth():
    x = torch.randn(8, 3, 32, 32)
    scales = {}
    for scheme in ("xavier", "kaiming"):
        torch.manual_seed(0)
        model = build_nin(arch="cifar", head="gap", width=0.5, in_chans=3, init=scheme, dropout=False).eval()
        with torch.no_grad():
            scales[scheme] = model.trunk(x).pow(2).mean().sqrt().item()
    assert scales["kaiming"] > 2 * scales["xavier"]  # xavier halves the variance at every ReLU layer
    with pytest.raises(ValueError, match="init must be one of"):
        build_nin(init="orthogonal")
