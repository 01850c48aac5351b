"""Dynamic high-resolution tiling: an image becomes a grid of square tiles plus a thumbnail.

Paper: InternVL 1.5 (arXiv 2404.16821) section 3.3, "Dynamic High-Resolution", kept by InternVL3
(arXiv 2504.10479) section 2.1; docs/papers.md §10.

The ViT sees tiles of `tile_size` x `tile_size` pixels (448 in InternVL). For an image of any size:

1. the candidate grids are every (columns, rows) with min_tiles <= columns * rows <= max_tiles;
2. the grid whose aspect ratio columns/rows is closest to the image's width/height wins
   (`find_closest_aspect_ratio`); on a tie (grids of equal ratio, such as 1x1, 2x2, 3x3) the larger
   grid wins only while the image's area exceeds half the grid's pixel area, so a small image is not
   blown up onto many tiles;
3. the image is resized (bicubic) to exactly (columns * tile_size, rows * tile_size) and cut into
   columns * rows tiles, row by row, left to right;
4. when there is more than one tile, a thumbnail (the whole image resized to one tile) is appended,
   so the model also sees the global view.

Resize policy for images above the tile budget: the image is never refused for being large (the
pixel limit in `images.py` guards decoding, not tiling) and never cropped. It is resized to the
chosen grid, so an image larger than max_tiles * tile_size^2 pixels is downscaled to fit that budget
and a smaller one is upscaled; the aspect ratio is kept up to the mismatch between the image and the
nearest grid, so an extreme panorama (say 40:1 with max_tiles=12) is squeezed onto the widest grid
(12x1). The number of visual tokens is therefore bounded by (max_tiles + 1) tiles whatever the input.

`pixel_values` then scales to [0, 1] and normalises with the ImageNet mean and std, as InternVL's
`build_transform` does, giving a float tensor (tiles, 3, tile_size, tile_size). This matches
transformers' GotOcr2 image processor with `crop_to_patches=True` (which its InternVL processor uses),
tested in tests/vl/test_tiling.py.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_TILE_SIZE = 448  # InternVL's ViT input
DEFAULT_MAX_TILES = 12  # InternVL's default max_dynamic_patch


@lru_cache(maxsize=64)
def target_ratios(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """Every (columns, rows) grid with min_tiles <= columns * rows <= max_tiles, fewest tiles first."""
    _check_counts(min_tiles, max_tiles)
    grids = [(c, r) for c in range(1, max_tiles + 1) for r in range(1, max_tiles + 1)
             if min_tiles <= c * r <= max_tiles]
    return tuple(sorted(grids, key=lambda grid: grid[0] * grid[1]))


def find_closest_aspect_ratio(aspect_ratio: float, ratios: tuple[tuple[int, int], ...] | list[tuple[int, int]],
                              width: int, height: int, tile_size: int) -> tuple[int, int]:
    """The (columns, rows) of `ratios` closest in aspect ratio to `aspect_ratio` (= width / height).

    InternVL's tie-break: among grids of equally close ratio, a later (larger) one replaces the best so
    far only when the image's area exceeds half of that grid's pixel area.
    """
    best_diff = float("inf")
    best = (1, 1)
    area = width * height
    for columns, rows in ratios:
        diff = abs(aspect_ratio - columns / rows)
        if diff < best_diff:
            best_diff, best = diff, (columns, rows)
        elif diff == best_diff and area > 0.5 * tile_size * tile_size * columns * rows:
            best = (columns, rows)
    return best


def tile_grid(width: int, height: int, tile_size: int = DEFAULT_TILE_SIZE, max_tiles: int = DEFAULT_MAX_TILES,
              min_tiles: int = 1) -> tuple[int, int]:
    """The (columns, rows) grid an image of `width` x `height` pixels is tiled into."""
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}x{height} has no pixels")
    if tile_size < 1:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile_size}")
    return find_closest_aspect_ratio(width / height, target_ratios(min_tiles, max_tiles), width, height, tile_size)


def num_tiles(width: int, height: int, tile_size: int = DEFAULT_TILE_SIZE, max_tiles: int = DEFAULT_MAX_TILES,
              min_tiles: int = 1, use_thumbnail: bool = True) -> int:
    """How many tiles `pixel_values` gives for an image of this size (the thumbnail included)."""
    columns, rows = tile_grid(width, height, tile_size, max_tiles, min_tiles)
    n = columns * rows
    return n + 1 if use_thumbnail and n > 1 else n


def dynamic_tiles(image: Image.Image, tile_size: int = DEFAULT_TILE_SIZE, max_tiles: int = DEFAULT_MAX_TILES,
                  min_tiles: int = 1, use_thumbnail: bool = True) -> list[Image.Image]:
    """The tiles of `image` (RGB), row by row, then the thumbnail when there is more than one tile."""
    image = image.convert("RGB")
    columns, rows = tile_grid(image.width, image.height, tile_size, max_tiles, min_tiles)
    resized = image.resize((columns * tile_size, rows * tile_size), Image.Resampling.BICUBIC)
    tiles = [resized.crop((c * tile_size, r * tile_size, (c + 1) * tile_size, (r + 1) * tile_size))
             for r in range(rows) for c in range(columns)]
    if use_thumbnail and len(tiles) > 1:
        tiles.append(image.resize((tile_size, tile_size), Image.Resampling.BICUBIC))
    return tiles


def normalize_tile(tile: Image.Image, mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """One RGB tile as a (3, H, W) float tensor: pixels / 255, minus mean, over std, per channel."""
    array = np.asarray(tile.convert("RGB"), dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def pixel_values(image: Image.Image, tile_size: int = DEFAULT_TILE_SIZE, max_tiles: int = DEFAULT_MAX_TILES,
                 use_thumbnail: bool = True, min_tiles: int = 1) -> torch.Tensor:
    """The ViT input of one image: (tiles, 3, tile_size, tile_size) float32, ImageNet-normalised."""
    tiles = dynamic_tiles(image, tile_size, max_tiles, min_tiles, use_thumbnail)
    return torch.stack([normalize_tile(tile) for tile in tiles])


def _check_counts(min_tiles: int, max_tiles: int) -> None:
    if min_tiles < 1 or max_tiles < min_tiles:
        raise ValueError(f"need 1 <= min_tiles <= max_tiles, got min_tiles={min_tiles}, max_tiles={max_tiles}")
