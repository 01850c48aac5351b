"""The processor files of an exported InternVL checkpoint against transformers' own InternVLProcessor:
a tiny random InternVL (save_vl_model) + a tokenizer with the image tokens + write_processor_files in
one directory; the processor's pixel values equal lmforge's tiling, its chat prompt ids equal
`vl_prompt_ids`, and InternVLForConditionalGeneration on the processor's outputs gives our logits
(V2PE delta 1: transformers has no V2PE)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lmforge.eval.vl_generate import vl_prompt_ids
from lmforge.model.vision import InternVL, save_vl_model, tiny_vl_config, v2pe_position_ids
from lmforge.tokenizer import Tokenizer, train_bpe
from lmforge.tokenizer.special import IMAGE_TOKENS, IMG_CONTEXT, IMG_END, IMG_START
from lmforge.vl.hf_processor import write_processor_files
from lmforge.vl.tiling import pixel_values
from lmforge.vl.train import export_vl

transformers = pytest.importorskip("transformers")
if not hasattr(transformers, "InternVLForConditionalGeneration") or not hasattr(transformers, "InternVLProcessor"):
    pytest.skip("this transformers has no InternVL", allow_module_level=True)

TILE, MAX_TILES = 64, 6
TEXTS = ["what colour is the square? it is red.", "how many circles are there? there are three.",
         "the cat sat on the mat and looked at the chart"] * 40


def load_processor(path):
    """transformers' InternVLProcessor from `path`. transformers 5 builds its video half only with
    torchvision; without it, a no-op video processor stands in (images never reach it)."""
    from transformers.utils import is_torchvision_available

    if is_torchvision_available():
        pil = transformers.AutoImageProcessor.from_pretrained(path, backend="pil")
        return transformers.AutoProcessor.from_pretrained(path, image_processor=pil)
    from transformers.video_processing_utils import BaseVideoProcessor

    class ImageOnlyInternVLProcessor(transformers.InternVLProcessor):
        def check_argument_for_proper_class(self, name, argument):
            if name == "video_processor":
                return type(argument)
            return super().check_argument_for_proper_class(name, argument)

    return ImageOnlyInternVLProcessor.from_pretrained(path, video_processor=BaseVideoProcessor())


def random_image(width, height, seed):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tok():
    return train_bpe(TEXTS, vocab_size=320, extra_special_tokens=IMAGE_TOKENS)


@pytest.fixture(scope="module")
def model(tok):
    cfg = tiny_vl_config(max_seq_len=256)
    cfg = cfg.replace(image_token_id=tok.token_to_id(IMG_CONTEXT))
    model = InternVL(cfg)
    model.init_weights(0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # norms, biases and layer scales away from their init values
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tok, model):
    path = tmp_path_factory.mktemp("internvl")
    tok.save(path)
    save_vl_model(model, path)
    write_processor_files(path, model.cfg, TILE, MAX_TILES)
    return path


@pytest.fixture(scope="module")
def processor(checkpoint):
    return load_processor(checkpoint)


def chat(*parts):
    content = [{"type": "image", "image": p} if isinstance(p, Image.Image) else {"type": "text", "text": p}
               for p in parts]
    return [{"role": "user", "content": content}]


def processed(processor, messages):
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                         return_tensors="pt")


def test_files_load_as_transformers_internvl_parts(checkpoint, processor, model, tok):
    assert isinstance(processor, transformers.InternVLProcessor)
    assert processor.image_seq_length == model.cfg.num_image_token
    ip = processor.image_processor
    assert type(ip).__name__.startswith("GotOcr2ImageProcessor")
    assert ip.crop_to_patches and (ip.min_patches, ip.max_patches) == (1, MAX_TILES)
    assert (ip.size.height, ip.size.width) == (TILE, TILE)
    t = processor.tokenizer
    assert (t.start_image_token, t.end_image_token, t.context_image_token) == (IMG_START, IMG_END, IMG_CONTEXT)
    assert t.context_image_token_id == tok.token_to_id(IMG_CONTEXT) == model.cfg.image_token_id
    assert (t.start_image_token_id, t.end_image_token_id) == (tok.token_to_id(IMG_START), tok.token_to_id(IMG_END))
    # lmforge still reads the amended tokenizer directory as before
    again = Tokenizer.load(checkpoint)
    assert again.vocab_size == tok.vocab_size and again.encode("the cat") == tok.encode("the cat")
    assert json.loads((checkpoint / "config.json").read_text())["image_seq_length"] == model.cfg.num_image_token


@pytest.mark.parametrize("width, height", [(150, 50), (64, 64), (40, 120), (30, 20)])
def test_pixel_values_equal_lmforge_tiling(processor, width, height):
    image = random_image(width, height, seed=width)
    theirs = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    ours = pixel_values(image, TILE, MAX_TILES)
    assert theirs.shape == ours.shape
    assert (theirs - ours).abs().max().item() <= 1e-6


@pytest.mark.parametrize("layout", ["one image", "two images first", "images in the text"])
def test_chat_prompt_ids_equal_vl_prompt_ids(processor, tok, model, layout):
    a, b = random_image(150, 50, 1), random_image(60, 80, 2)
    messages, question, images = {
        "one image": (chat(a, "what colour is the square?"), "what colour is the square?", [a]),
        "two images first": (chat(a, b, "how many circles?"), "how many circles?", [a, b]),
        "images in the text": (chat("compare ", a, " and", b), "compare <image> and<image>", [a, b]),
    }[layout]
    out = processed(processor, messages)
    tiles = [pixel_values(im, TILE, MAX_TILES) for im in images]
    ours = vl_prompt_ids(tok, question, [len(t) for t in tiles], model.cfg.num_image_token,
                         image_token_id=model.cfg.image_token_id)
    assert out["input_ids"][0].tolist() == ours
    assert (out["pixel_values"] - torch.cat(tiles)).abs().max().item() <= 1e-6


def test_logits_equal_on_processor_outputs(checkpoint, processor, model):
    image = random_image(150, 50, 3)
    out = processed(processor, chat(image, "what colour is the square?"))
    hf = transformers.InternVLForConditionalGeneration.from_pretrained(
        checkpoint, dtype=torch.float32, attn_implementation="eager").eval()
    ids = out["input_ids"]
    assert (ids == model.cfg.image_token_id).sum() == len(out["pixel_values"]) * model.cfg.num_image_token
    with torch.no_grad():
        theirs = hf(**out).logits
        ours = model(ids, out["pixel_values"], position_ids=v2pe_position_ids(ids, model.cfg.image_token_id, 1.0))
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_export_vl_writes_the_processor(tmp_path, tok, model):
    tok.save(tmp_path / "tok")
    out = export_vl(model.cfg, model.state_dict(), tmp_path / "tok", tmp_path / "model", max_tiles=MAX_TILES)
    processor = load_processor(out)
    assert processor.image_seq_length == model.cfg.num_image_token
    assert processor.image_processor.max_patches == MAX_TILES


def test_clear_errors(tmp_path, tok, model):
    with pytest.raises(FileNotFoundError, match="tokenizer files"):
        write_processor_files(tmp_path, model.cfg, TILE, MAX_TILES)
    tok.save(tmp_path)
    with pytest.raises(ValueError, match="image_token_id"):
        write_processor_files(tmp_path, model.cfg.replace(image_token_id=5), TILE, MAX_TILES)
    with pytest.raises(ValueError, match="image_size"):
        write_processor_files(tmp_path, model.cfg, TILE * 2, MAX_TILES)
    plain = tmp_path / "plain"
    train_bpe(TEXTS, vocab_size=320).save(plain)
    with pytest.raises(ValueError, match="IMAGE_TOKENS"):
        write_processor_files(plain, model.cfg, TILE, MAX_TILES)
