"""Processor files for an exported InternVL checkpoint: what `transformers.AutoProcessor` needs to
load its `InternVLProcessor` (GotOcr2 image processor + the tokenizer + a chat template) from the same
directory as the weights (`lmforge.model.vision.hf.save_vl_model`) and the tokenizer files
(InternVL3, arXiv 2504.10479, section 2.1; InternVL 1.5, arXiv 2404.16821, section 3.3 for the
tiling; docs/papers.md §10).

`write_processor_files(out_dir, cfg, tile_size, max_tiles)` writes

    preprocessor_config.json        GotOcr2ImageProcessor with crop_to_patches: InternVL's dynamic
                                    tiling (min_patches 1, max_patches = max_tiles, a thumbnail when
                                    there is more than one tile), tile_size x tile_size tiles, bicubic,
                                    pixels / 255, ImageNet mean and std: `lmforge.vl.tiling`'s recipe
    video_preprocessor_config.json  InternVLVideoProcessor with the same size and normalisation (the
                                    processor class has a video half; lmforge trains no video)
    processor_config.json           processor_class InternVLProcessor, image_seq_length =
                                    cfg.num_image_token (tokens per tile after pixel shuffle)
    chat_template.jinja             the InternLM2 chat format, extended to content lists with image
                                    parts, laid out as `lmforge.eval.vl_generate.user_content`

and declares the image tokens in the directory's tokenizer_config.json under the names the
processor reads (`start_image_token` <img>, `end_image_token` </img>, `context_image_token`
<IMG_CONTEXT>, `video_token` <video>), so the tokenizer files must be there first.

The processor expands each `<IMG_CONTEXT>` of the text into `<img>` + `<IMG_CONTEXT>` x (tiles x
image_seq_length) + `</img>`; the chat template writes one `<IMG_CONTEXT>\\n` per leading image part
(`Image-i: ` before each when there are several), so `processor.apply_chat_template` gives the same
ids as `vl_prompt_ids` and the same pixels as `tiling.pixel_values` (tests/vl/test_hf_processor.py).

Differences from lmforge's own prompt, documented here because they cannot be avoided:
- An image part after a text part is written in place with no newline, as a `<image>` placeholder
  in lmforge's question; several leading images are numbered. A message whose images sit at the
  start with `<image>` placeholders (`<image><image>Q` in lmforge) has no chat-template equivalent.
- transformers' InternVL processor requires a video token. `<video>` is not in lmforge's vocabulary:
  transformers appends it as a new special token (id len(tokenizer)) on loading, possibly past the
  model's embedding; text with a literal `<video>` or a video input is therefore not supported.
- In transformers 5, `AutoProcessor` cannot build an `InternVLProcessor` without torchvision (its
  video processor needs it), even for images only; the test stands a no-op video processor in for
  it when torchvision is missing. With torchvision, transformers picks the torchvision GotOcr2 image
  processor, whose tensor bicubic resize may differ slightly from PIL's (not checked here); for
  lmforge's pixels exactly, pass the PIL one:
  `AutoProcessor.from_pretrained(dir, image_processor=AutoImageProcessor.from_pretrained(dir, backend="pil"))`.
- V2PE is not in transformers: it uses integer positions, V2PE with delta 1
  (`lmforge.model.vision.hf`).
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.atomic import write_atomic
from lmforge.model.vision.config import VLConfig
from lmforge.tokenizer.hf_files import TOKENIZER_JSON, declare_named_tokens
from lmforge.tokenizer.special import IMG_CONTEXT, IMG_END, IMG_START
from lmforge.vl.tiling import IMAGENET_MEAN, IMAGENET_STD

PREPROCESSOR_CONFIG = "preprocessor_config.json"
VIDEO_PREPROCESSOR_CONFIG = "video_preprocessor_config.json"
PROCESSOR_CONFIG = "processor_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
VIDEO_TOKEN = "<video>"
# The names transformers' InternVLProcessor reads from its tokenizer (processing_internvl.py).
IMAGE_TOKEN_NAMES = {"start_image_token": IMG_START, "end_image_token": IMG_END,
                     "context_image_token": IMG_CONTEXT, "video_token": VIDEO_TOKEN}
BICUBIC = 3  # PIL.Image.Resampling.BICUBIC, as tiling.dynamic_tiles resizes

# lmforge's InternLM2 template (lmforge.tokenizer.chat) for string contents; a content list renders
# its text parts and one <IMG_CONTEXT> per image part, which the processor expands to the image's
# block. Leading images get a newline (numbered when several), images after text none: the two
# layouts of lmforge.eval.vl_generate.user_content.
VL_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% set n_images = message['content'] | selectattr('type', 'equalto', 'image') | list | length %}"
    "{% set ns = namespace(index=0, text=false) %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{% set ns.index = ns.index + 1 %}"
    "{% if ns.text %}{{ '" + IMG_CONTEXT + "' }}"
    "{% else %}{% if n_images > 1 %}{{ 'Image-' ~ ns.index ~ ': ' }}{% endif %}{{ '" + IMG_CONTEXT + "\\n' }}"
    "{% endif %}"
    "{% elif part['type'] == 'video' %}{{ '" + VIDEO_TOKEN + "\\n' }}"
    "{% elif part['type'] == 'text' %}{% set ns.text = true %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def image_processor_config(tile_size: int, max_tiles: int) -> dict:
    """GotOcr2ImageProcessor settings equal to `tiling.pixel_values(image, tile_size, max_tiles)`."""
    if tile_size < 1 or max_tiles < 1:
        raise ValueError(f"tile_size={tile_size} and max_tiles={max_tiles} must both be >= 1")
    return {"image_processor_type": "GotOcr2ImageProcessor", "processor_class": "InternVLProcessor",
            "crop_to_patches": True, "min_patches": 1, "max_patches": max_tiles,
            "size": {"height": tile_size, "width": tile_size}, "resample": BICUBIC,
            "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "do_convert_rgb": True}


def video_processor_config(tile_size: int) -> dict:
    return {"video_processor_type": "InternVLVideoProcessor", "processor_class": "InternVLProcessor",
            "size": {"height": tile_size, "width": tile_size}, "resample": BICUBIC,
            "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "do_convert_rgb": True}


def _check_tokenizer(out_dir: Path, cfg: VLConfig) -> None:
    path = out_dir / TOKENIZER_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: write the tokenizer files into {out_dir} before the processor "
                                "files (the processor declares the image tokens in its tokenizer_config.json)")
    data = json.loads(path.read_text(encoding="utf-8"))
    added = {t.get("content"): t.get("id") for t in data.get("added_tokens", []) if isinstance(t, dict)}
    missing = [t for t in (IMG_START, IMG_END, IMG_CONTEXT) if t not in added]
    if missing:
        raise ValueError(f"{path} lacks the image token(s) {missing}; a vision-language tokenizer is trained with "
                         "train_bpe(..., extra_special_tokens=IMAGE_TOKENS)")
    if added[IMG_CONTEXT] != cfg.image_token_id:
        raise ValueError(f"{path}: {IMG_CONTEXT} has id {added[IMG_CONTEXT]} but the model's image_token_id is "
                         f"{cfg.image_token_id}; transformers' processor writes the tokenizer's id, so the model "
                         "would see no image tokens. Build the VLConfig with the tokenizer's id")


def write_processor_files(out_dir: str | Path, cfg: VLConfig, tile_size: int, max_tiles: int) -> list[str]:
    """Write the files `AutoProcessor.from_pretrained(out_dir)` loads as an InternVLProcessor whose
    pixels and prompt ids are lmforge's; return the names written (tokenizer_config.json amended)."""
    out_dir = Path(out_dir)
    _check_tokenizer(out_dir, cfg)
    if tile_size != cfg.vision.image_size:
        raise ValueError(f"tile_size={tile_size} differs from the vision tower's image_size={cfg.vision.image_size}")
    files = {PREPROCESSOR_CONFIG: image_processor_config(tile_size, max_tiles),
             VIDEO_PREPROCESSOR_CONFIG: video_processor_config(tile_size),
             PROCESSOR_CONFIG: {"processor_class": "InternVLProcessor", "image_seq_length": cfg.num_image_token}}
    for name, data in files.items():
        write_atomic(out_dir / name, json.dumps(data, indent=2) + "\n")
    write_atomic(out_dir / CHAT_TEMPLATE_FILE, VL_CHAT_TEMPLATE)
    declare_named_tokens(out_dir, IMAGE_TOKEN_NAMES)
    return [*files, CHAT_TEMPLATE_FILE, "tokenizer_config.json"]


__all__ = ["write_processor_files", "image_processor_config", "VL_CHAT_TEMPLATE", "IMAGE_TOKEN_NAMES"]
