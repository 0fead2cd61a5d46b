"""Class maps on hand-built nets whose correct maps are known, on every real head, and the localisation measures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nin.cam import box_share, class_maps, energy_share, pointing_hits
from nin.models import Net, build_alexnet, build_nin, nin_block

SIZE = 16  # input px; the hand-built trunks average 2×2 cells, so their maps are 8×8


def upsampled(native: torch.Tensor) -> torch.Tensor:
    return F.interpolate(native[None, None], size=SIZE, mode="bilinear", align_corners=False)[0, 0]


def averaging_block(channels: int) -> nn.Sequential:
    """A NiN block whose conv averages each 2×2 cell of its own input channel: feature map k = 2×2 mean of input k."""
    block = nin_block(channels, [channels], kernel=2, stride=2, padding=0)
    with torch.no_grad():
        block[0].weight.zero_()
        block[0].bias.zero_()
        for k in range(channels):
            block[0].weight[k, k] = 0.25
    return block


# One image channel: a bright 4×4 square (cells rows 2-3, columns 5-6 of the 8×8 map) and a dim 2×2 one (cell 6, 0).
def square_image() -> torch.Tensor:
    x = torch.zeros(1, SIZE, SIZE)
    x[0, 4:8, 10:14] = 1.0
    x[0, 12:14, 0:2] = 0.5
    return x


def square_native() -> torch.Tensor:
    native = torch.zeros(8, 8)
    native[2:4, 5:7] = 1.0
    native[6, 0] = 0.5
    return native


BRIGHT_BOX = torch.tensor([10, 4, 14, 8])  # (x0, y0, x1, y1) of the bright square in input px
DIM_BOX = torch.tensor([0, 12, 2, 14])


def gap_net() -> Net:
    """trunk: 2×2 mean. GAP head: class 0 map = +features, class 1 map = -features (no final ReLU: gap_relu false)."""
    head_block = nin_block(1, [2], kernel=1, stride=1, padding=0, final_relu=False)
    with torch.no_grad():
        head_block[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
        head_block[0].bias.zero_()
    head = nn.Sequential(head_block, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Net(nn.Sequential(averaging_block(1)), head, "known-gap", min_size=2, fixed_size=None)


def test_gap_maps_are_the_class_maps_of_the_last_block():
    model = gap_net()
    images = square_image().expand(2, 1, SIZE, SIZE)
    result = class_maps(model, images, torch.tensor([0, 1]))
    assert result.method == "cam" and result.cam_resolution == (8, 8)
    assert result.maps.shape == (2, SIZE, SIZE)
    torch.testing.assert_close(result.maps[0], upsampled(square_native()))
    torch.testing.assert_close(result.maps[1], -upsampled(square_native()))  # negative, kept as it is
    # logits = map means (+m, -m): class 0 wins with probability softmax = sigmoid(2m) for both images.
    m = square_native().mean()
    assert result.predicted.tolist() == [0, 0]
    torch.testing.assert_close(result.probability, torch.sigmoid(2 * m).repeat(2))
    # Class 0 points at the bright square; class 1's map peaks where the image is black (a miss).
    boxes = torch.stack([BRIGHT_BOX, BRIGHT_BOX])
    assert pointing_hits(result.maps, boxes).tolist() == [True, False]
    assert energy_share(result.maps, boxes).tolist()[1] == 0.0  # no positive mass


def gradcam_net() -> Net:
    """Two input channels, trunk 2×2 mean → 2×2 max pool → dropout; linear head over the 2×4×4 features.

    Class 0 weighs channel-0 features +1/16: Grad-CAM's α = (+1/64, 0), so its map is feature 0 / 64.
    Class 1 weighs channel 0 by -1/16 and channel 1 by +1/16: its map is ReLU(feature 1 - feature 0) / 64.
    (A max pool passes each window's gradient to one cell, so every α is a window weight × 16 windows / 64 cells.)
    """
    trunk = nn.Sequential(averaging_block(2), nn.MaxPool2d(2), nn.Dropout(0.5))
    linear = nn.Linear(2 * 4 * 4, 2)
    with torch.no_grad():
        linear.bias.zero_()
        linear.weight.zero_()
        linear.weight[0, :16] = 1 / 16
        linear.weight[1, :16] = -1 / 16
        linear.weight[1, 16:] = 1 / 16
    return Net(trunk, nn.Sequential(nn.Flatten(), linear), "known-fc", min_size=4, fixed_size=SIZE)


def two_square_image() -> torch.Tensor:
    x = torch.zeros(2, SIZE, SIZE)
    x[0] = square_image()[0]
    x[1, 0:4, 0:6] = 2.0  # channel 1: a square at the top left, overlapping nothing of channel 0
    return x


def test_gradcam_maps_on_a_known_net():
    model = gradcam_net()
    images = two_square_image().expand(2, 2, SIZE, SIZE)
    result = class_maps(model, images, [0, 1])
    assert result.method == "gradcam" and result.cam_resolution == (8, 8)
    feature0 = square_native()
    feature1 = torch.zeros(8, 8)
    feature1[0:2, 0:3] = 2.0
    torch.testing.assert_close(result.maps[0], upsampled(feature0 / 64))
    torch.testing.assert_close(result.maps[1], upsampled(torch.relu(feature1 - feature0) / 64))
    hits = pointing_hits(result.maps, torch.stack([BRIGHT_BOX, torch.tensor([0, 0, 6, 4])]))
    assert hits.tolist() == [True, True]


def test_class_maps_leave_the_model_as_it_was():
    for model in (gap_net(), gradcam_net()):
        model.train()  # dropout on: the maps must still be the eval-mode ones
        frozen = next(model.trunk.parameters())
        frozen.requires_grad_(False)
        images = (square_image() if model.arch_name == "known-gap" else two_square_image())[None]
        with torch.no_grad():  # a caller under no_grad still gets Grad-CAM
            first = class_maps(model, images, [0])
        second = class_maps(model, images, [0])
        torch.testing.assert_close(first.maps, second.maps)
        assert model.training
        assert not frozen.requires_grad
        assert all(p.requires_grad for p in model.parameters() if p is not frozen)
        assert all(p.grad is None for p in model.parameters())
        assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_class_maps_refuse_a_class_per_image_mismatch():
    with pytest.raises(ValueError, match="one class per image"):
        class_maps(gap_net(), square_image()[None], [0, 1])
    with pytest.raises(ValueError, match=r"0\.\.1"):
        class_maps(gradcam_net(), two_square_image()[None], [2])


# Native map sizes by layer arithmetic. cifar, 32 px: conv 5/p2 → 32, max pool 3/2 ceil → 16, conv → 16, avg pool
# → 8; the GAP block (3/p1) keeps 8, Grad-CAM is taken before the avg pool (16). d2l, 224 px: conv 11/4 → 54, pool
# → 26, conv 5/p2 → 26, pool → 12, conv 3/p1 → 12, pool → 5; GAP 5, Grad-CAM 12. AlexNet 224 px: conv 11/4/p1 → 54,
# pool → 26, conv → 26, pool → 12, three 3/p1 convs → 12, pool → 5; Grad-CAM before that pool: 12.
REAL = [
    ("cifar gap", lambda: build_nin("cifar", "gap", in_chans=3, width=0.1), 3, 32, (8, 8), "cam"),
    ("cifar fc", lambda: build_nin("cifar", "fc", in_chans=3, width=0.1), 3, 32, (16, 16), "gradcam"),
    ("cifar alexnet", lambda: build_nin("cifar", "alexnet", in_chans=3, width=0.1), 3, 32, (16, 16), "gradcam"),
    ("d2l gap relu off", lambda: build_nin("d2l", "gap", width=0.05, gap_relu=False), 1, 224, (5, 5), "cam"),
    ("d2l fc", lambda: build_nin("d2l", "fc", width=0.05), 1, 224, (12, 12), "gradcam"),
    ("d2l alexnet", lambda: build_nin("d2l", "alexnet", width=0.05), 1, 224, (12, 12), "gradcam"),
    ("alexnet reference", lambda: build_alexnet(width=0.05), 1, 224, (12, 12), "gradcam"),
]


@pytest.mark.parametrize(
    ("build", "chans", "size", "resolution", "method"), [r[1:] for r in REAL], ids=[r[0] for r in REAL]
)
def test_every_real_head(build, chans, size, resolution, method):
    torch.manual_seed(0)
    model = build()
    images = torch.randn(3, chans, size, size)
    classes = torch.tensor([0, 4, 9])
    result = class_maps(model, images, classes)
    assert result.method == method and result.cam_resolution == resolution
    assert result.maps.shape == (3, size, size) and result.maps.dtype == torch.float32
    assert torch.isfinite(result.maps).all()
    if method == "gradcam":
        assert float(result.maps.min()) >= 0
    # The prediction is the eval-mode net's own.
    with torch.no_grad():
        probs = torch.softmax(model.eval()(images), dim=1)
    torch.testing.assert_close(result.probability, probs.max(dim=1).values)
    assert torch.equal(result.predicted, probs.argmax(dim=1))


# --- localisation measures on constructed maps ---


def one_hot_map(h: int, w: int, row: int, col: int) -> torch.Tensor:
    m = torch.zeros(h, w)
    m[row, col] = 1.0
    return m


def test_pointing_peak_inside_half_open_box():
    maps = torch.stack([one_hot_map(10, 10, 3, 5)] * 4)
    boxes = torch.tensor([[5, 3, 6, 4], [0, 0, 5, 10], [0, 0, 10, 3], [4, 2, 9, 9]])
    assert pointing_hits(maps, boxes).tolist() == [True, False, False, True]


def test_pointing_constant_and_negative_maps():
    full = torch.tensor([[0, 0, 6, 6]] * 3)
    maps = torch.stack([torch.zeros(6, 6), torch.full((6, 6), 3.0), -torch.ones(6, 6)])
    maps[2, 1, 1] = -0.5  # all negative, but the peak (the least negative cell) is still a peak
    assert pointing_hits(maps, full).tolist() == [False, False, True]


def test_pointing_tied_peak_is_placed_at_its_centroid():
    m = torch.zeros(1, 4, 8)
    m[0, 1, 2:5] = 1.0  # a 3-cell plateau, columns 2..4: centroid at x = 3.5 (pixel-centre coordinates)
    m[0, 1, 3] -= 1e-9  # rounding noise of an upsampled plateau does not break the tie
    assert pointing_hits(m, torch.tensor([[3, 0, 5, 4]])).tolist() == [True]  # column 2 outside, centroid in
    assert pointing_hits(m, torch.tensor([[0, 0, 3, 4]])).tolist() == [False]  # column 2 inside, centroid out


def test_random_pointer_scores_box_share():
    # Every position of a one-cell peak once: the hit rate is exactly the box's share of the canvas.
    h, w = 6, 9
    maps = torch.stack([one_hot_map(h, w, r, c) for r in range(h) for c in range(w)])
    box = torch.tensor([2, 1, 7, 4])
    hits = pointing_hits(maps, box.expand(len(maps), 4))
    share = box_share(box[None], (h, w))
    assert share.tolist() == pytest.approx([5 * 3 / 54])
    assert hits.float().mean().item() == pytest.approx(share.item())


def test_energy_share_counts_positive_mass_only():
    maps = torch.zeros(3, 4, 4)
    maps[0, 0, 0] = 3.0  # inside
    maps[0, 3, 3] = 1.0  # outside
    maps[0, 2, 3] = -5.0  # negative mass is ignored
    maps[1] = -1.0  # no positive mass: 0
    box = torch.tensor([0, 0, 2, 2]).expand(3, 4)
    assert energy_share(maps, box).tolist() == pytest.approx([0.75, 0.0, 0.0])


def test_energy_share_fractional_box_counts_pixel_centres():
    maps = torch.ones(1, 1, 3)
    # Pixel centres 0.5, 1.5, 2.5: a box from 0.5 to 2.0 holds the first two.
    assert energy_share(maps, torch.tensor([[0.5, 0.0, 2.0, 1.0]])).tolist() == pytest.approx([2 / 3])


def test_box_share_non_square_canvas():
    boxes = torch.tensor([[0, 0, 10, 5], [0, 0, 20, 10]])
    assert box_share(boxes, (10, 20)).tolist() == pytest.approx([0.25, 1.0])
    assert box_share(boxes[:1], 20).tolist() == pytest.approx([0.125])


def test_measures_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="boxes"):
        pointing_hits(torch.zeros(2, 4, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="boxes"):
        energy_share(torch.zeros(4, 4), torch.zeros(1, 4))
