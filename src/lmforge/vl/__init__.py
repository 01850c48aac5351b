"""Vision-language data for the InternVL3-style model (arXiv 2504.10479; docs/papers.md §10).

`images` loads one image safely, `tiling` turns it into InternVL's dynamic high-resolution tiles,
`synth` draws the demo set (captions and checkable questions in en and zh), `answers` grades
replies, and `format` writes and reads InternVL's chat JSONL. The model itself lives in
`lmforge.model.vision`.
"""

from lmforge.vl.answers import KINDS, check_answer, wrong_answer
from lmforge.vl.format import IMAGE_TOKEN, VLRecord, read_vl_dataset, write_vl_dataset
from lmforge.vl.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, FORMATS, ImageError, load_image
from lmforge.vl.synth import LANGS, VLExample, available_kinds, demo_split, generate, unavailable_kinds
from lmforge.vl.tiling import (IMAGENET_MEAN, IMAGENET_STD, dynamic_tiles, find_closest_aspect_ratio, num_tiles,
                               pixel_values, target_ratios, tile_grid)

__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "FORMATS", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_TOKEN", "KINDS",
    "LANGS", "ImageError", "VLExample", "VLRecord", "available_kinds", "check_answer", "demo_split",
    "dynamic_tiles", "find_closest_aspect_ratio", "generate", "load_image", "num_tiles", "pixel_values",
    "read_vl_dataset", "target_ratios", "tile_grid", "unavailable_kinds", "write_vl_dataset", "wrong_answer",
]
