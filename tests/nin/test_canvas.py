"""Canvas placement: fixed positions per (seed, split), exact pixel content, boxes that follow a resize."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nin.cam import box_masks, energy_share
from nin.canvas import check_canvas, place_on_canvas, scale_boxes
from nin.errors import InputError


def random_images(n: int = 64, c: int = 1, h: int = 8, w: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, c, h, w), generator=g, dtype=torch.uint8)  # no black pixel: content is visible


def test_positions_depend_on_seed_and_split_only():
    images = random_images()
    _, boxes = place_on_canvas(images, 28, seed=0, split="test")
    # Another variant's images (other content, other count) get the same positions: they come from (seed, split).
    _, again = place_on_canvas(random_images(n=100, seed=7), 28, seed=0, split="test")
    assert torch.equal(again[: len(boxes)], boxes)
    _, train = place_on_canvas(images, 28, seed=0, split="train")
    _, other_seed = place_on_canvas(images, 28, seed=1, split="test")
    # 64 boxes drawn independently over 21×21 corners coincide by chance with probability ~(1/441)^64.
    assert not torch.equal(train, boxes)
    assert not torch.equal(other_seed, boxes)


def test_positions_cover_the_canvas():
    _, boxes = place_on_canvas(random_images(n=2000), 12, seed=3, split="train")
    # 8 px images on a 12 px canvas: every corner 0..4 is used, and the image always fits.
    for axis in (0, 1):
        assert set(boxes[:, axis].tolist()) == {0, 1, 2, 3, 4}
    assert int(boxes[:, 2:].max()) == 12
    assert torch.equal(boxes[:, 2] - boxes[:, 0], torch.full((2000,), 8))


@pytest.mark.parametrize(("c", "h", "w"), [(1, 8, 8), (3, 5, 7)])
def test_pixel_content_is_the_image_on_black(c, h, w):
    images = random_images(n=16, c=c, h=h, w=w)
    out, boxes = place_on_canvas(images, 20, seed=0, split="test")
    assert out.shape == (16, c, 20, 20) and out.dtype == torch.uint8
    assert boxes.shape == (16, 4) and torch.equal(boxes[:, 2] - boxes[:, 0], torch.full((16,), w))
    for k in range(16):
        x0, y0, x1, y1 = boxes[k].tolist()
        assert torch.equal(out[k, :, y0:y1, x0:x1], images[k])
    outside = ~box_masks(boxes, 20)[:, None].expand_as(out)
    assert int(out[outside].max()) == 0


@pytest.mark.parametrize("image_size", [40, 10, 33])  # upsample, downsample (antialiased), non-integer factor
def test_boxes_follow_the_resize(image_size):
    images = torch.full((32, 1, 8, 8), 255, dtype=torch.uint8)
    out, boxes = place_on_canvas(images, 20, seed=0, split="train")
    down = image_size < 20
    resized = F.interpolate(out.float(), size=image_size, mode="bilinear", align_corners=False, antialias=down)[:, 0]
    scaled = scale_boxes(boxes, 20, image_size)
    # A bilinear resize is symmetric about the box centre, so the image mass is centred on the scaled box, up to
    # sampling phase and the clamped canvas border (< 0.05 px here; align-corners geometry would be off by ~0.2 px).
    centres = torch.arange(image_size, dtype=torch.float64) + 0.5
    mass = resized.double().sum(dim=(1, 2))
    cx = (resized.double().sum(dim=1) * centres).sum(dim=1) / mass
    cy = (resized.double().sum(dim=2) * centres).sum(dim=1) / mass
    assert torch.allclose(cx, ((scaled[:, 0] + scaled[:, 2]) / 2).double(), atol=0.05)
    assert torch.allclose(cy, ((scaled[:, 1] + scaled[:, 3]) / 2).double(), atol=0.05)
    # and the mass lies in it, up to the one-pixel blur of the edges.
    assert float(energy_share(resized, scaled).min()) > (0.7 if down else 0.85)
    assert torch.allclose(scaled[:, 2] - scaled[:, 0], torch.full((32,), 8 * image_size / 20))


def test_scale_boxes_non_square():
    boxes = torch.tensor([[2, 4, 10, 12]])
    assert scale_boxes(boxes, (20, 40), (10, 10)).tolist() == [[0.5, 2.0, 2.5, 6.0]]


@pytest.mark.parametrize(
    ("canvas", "message"),
    [
        (28, "not larger than the images"),
        (20, "not larger than the images"),
        (0, "positive integer"),
        (-5, "positive integer"),
        (32.0, "positive integer"),
        ("64", "positive integer"),
        (True, "positive integer"),
    ],
)
def test_bad_canvas_is_one_clear_error(canvas, message):
    with pytest.raises(InputError, match=message):
        check_canvas(canvas, 28)
    with pytest.raises(InputError, match=message):
        place_on_canvas(random_images(n=2, h=28, w=28), canvas, seed=0, split="train")


def test_good_canvas_passes():
    assert check_canvas(29, 28) == 29
