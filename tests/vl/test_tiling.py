"""Dynamic tiling against transformers' own InternVL image processing (GotOcr2's `crop_to_patches`):
the same grid, the same number of tiles and the same normalised pixels on several aspect ratios."""

import numpy as np
import pytest
import torch
from PIL import Image

from lmforge.vl.tiling import (IMAGENET_MEAN, IMAGENET_STD, find_closest_aspect_ratio, num_tiles, pixel_values,
                               target_ratios, tile_grid)

pil_processor = pytest.importorskip("transformers.models.got_ocr2.image_processing_pil_got_ocr2")

TILE, MAX_TILES = 32, 6
SIZES = [(64, 64), (100, 30), (30, 100), (50, 40), (16, 16), (200, 20), (45, 60), (96, 64), (1000, 10), (33, 31)]


def random_image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def processor():
    return pil_processor.GotOcr2ImageProcessorPil(
        size={"height": TILE, "width": TILE}, crop_to_patches=True, min_patches=1, max_patches=MAX_TILES,
        image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))


@pytest.mark.parametrize("width, height", SIZES)
def test_grid_and_tiles_match_transformers(processor, width, height):
    columns, rows = tile_grid(width, height, TILE, MAX_TILES)
    assert (columns, rows) == pil_processor.get_optimal_tiled_canvas((height, width), (TILE, TILE), 1, MAX_TILES)
    image = random_image(width, height)
    theirs = processor(images=[image], return_tensors="pt")["pixel_values"]
    ours = pixel_values(image, TILE, MAX_TILES)
    assert ours.dtype == torch.float32
    assert ours.shape == theirs.shape == (num_tiles(width, height, TILE, MAX_TILES), 3, TILE, TILE)
    assert torch.allclose(ours, theirs, atol=1e-2)  # the same bicubic resize: equal in practice


def test_target_ratios_fewest_tiles_first():
    ratios = target_ratios(1, 4)
    assert set(ratios) == {(1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (2, 2), (4, 1)}
    assert [c * r for c, r in ratios] == sorted(c * r for c, r in ratios)
    assert all(2 <= c * r <= 6 for c, r in target_ratios(2, 6))
    with pytest.raises(ValueError, match="min_tiles"):
        target_ratios(3, 2)


def test_tie_break_prefers_more_tiles_only_for_large_images():
    # 1x1, 2x2 and 3x3 tie on a square image: a small one stays on one tile, a large one spreads
    ratios = target_ratios(1, 9)
    assert find_closest_aspect_ratio(1.0, ratios, 40, 40, 32) == (1, 1)
    assert find_closest_aspect_ratio(1.0, ratios, 60, 60, 32) == (2, 2)
    assert find_closest_aspect_ratio(1.0, ratios, 200, 200, 32) == (3, 3)


def test_tiles_are_crops_of_the_resized_image_and_the_thumbnail_comes_last():
    image = random_image(96, 64, seed=3)
    values = pixel_values(image, TILE, MAX_TILES)
    assert values.shape[0] == 3 * 2 + 1
    single = pixel_values(random_image(32, 32), TILE, MAX_TILES)
    assert single.shape == (1, 3, TILE, TILE)  # no thumbnail for a single tile
    assert pixel_values(image, TILE, MAX_TILES, use_thumbnail=False).shape[0] == 6
    # a uniform image normalises to (value/255 - mean) / std in every tile
    grey = pixel_values(Image.new("RGB", (90, 30), (128, 128, 128)), TILE, MAX_TILES)
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(grey.mean(dim=(0, 2, 3)), expected, atol=1e-4)


def test_huge_or_extreme_images_stay_within_the_tile_budget():
    assert num_tiles(40000, 100, TILE, MAX_TILES) == MAX_TILES + 1  # squeezed onto the widest grid
    assert tile_grid(40000, 100, TILE, MAX_TILES) == (MAX_TILES, 1)
    assert num_tiles(448 * 20, 448 * 20, 448, 12) == 3 * 3 + 1
    with pytest.raises(ValueError, match="no pixels"):
        tile_grid(0, 10)
