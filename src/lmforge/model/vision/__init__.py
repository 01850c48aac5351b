"""The vision side of lmforge's InternVL3-style model: InternViT, pixel shuffle, the MLP projector
spliced into InternLM2, V2PE positions, and the Hugging Face InternVL format (InternVL3, arXiv
2504.10479; V2PE, arXiv 2412.09616; docs/papers.md §10)."""

from lmforge.model.vision.config import VisionConfig, VLConfig, tiny_vl_config
from lmforge.model.vision.hf import load_vision_tower, load_vl_model, save_vl_model
from lmforge.model.vision.pixel_shuffle import pixel_shuffle, shuffle_tokens
from lmforge.model.vision.v2pe import sample_deltas, v2pe_position_ids
from lmforge.model.vision.vit import InternViT
from lmforge.model.vision.vlm import InternVL

__all__ = ["VisionConfig", "VLConfig", "InternVL", "InternViT", "v2pe_position_ids", "sample_deltas",
           "save_vl_model", "load_vl_model", "load_vision_tower", "tiny_vl_config", "pixel_shuffle", "shuffle_tokens"]
