"""The InternLM2 special tokens: chat format and tool-use tokens.

Paper: InternLM2 report, arXiv 2403.17297; docs/papers.md §1.

InternLM2 reserves `<unk>`, `<s>` and `</s>` as ids 0, 1 and 2, and six chat/tool tokens. In the
released 92,544-entry tokenizer the six sit at ids 92538..92543; a tokenizer trained here puts
them right after the first three, so the whole set is ids 0..8. The order below is the order of
the released ids, so "first three, then the rest in this order" reproduces it.

`bos_post_processor` is the `<s> $A` template that puts bos in front of a sequence when
`tokenizers` or `transformers` are asked to add special tokens.
"""

from __future__ import annotations

from collections.abc import Iterator

from tokenizers import processors

UNK = "<unk>"
BOS = "<s>"
EOS = "</s>"

PLUGIN = "<|plugin|>"
INTERPRETER = "<|interpreter|>"
ACTION_END = "<|action_end|>"
ACTION_START = "<|action_start|>"
IM_END = "<|im_end|>"
IM_START = "<|im_start|>"

# Chat and tool-use markers, in the order of their released ids (92538..92543).
CHAT_TOKENS: tuple[str, ...] = (PLUGIN, INTERPRETER, ACTION_END, ACTION_START, IM_END, IM_START)

# Every special token, in id order for a tokenizer trained by lmforge (ids 0..8).
SPECIAL_TOKENS: tuple[str, ...] = (UNK, BOS, EOS, *CHAT_TOKENS)

# InternVL's image markers (InternVL3, arXiv 2504.10479; docs/papers.md §10): an image in a prompt is
# `<img>` + one `<IMG_CONTEXT>` per visual token + `</img>`. A vision-language tokenizer adds them
# after the ids above (`train_bpe(..., extra_special_tokens=IMAGE_TOKENS)`).
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
IMAGE_TOKENS: tuple[str, ...] = (IMG_START, IMG_END, IMG_CONTEXT)
# Where an image goes in a user turn of InternVL's chat data, before it is expanded to `image_text`.
IMAGE_PLACEHOLDER = "<image>"


def image_text(n_tiles: int, num_image_token: int) -> str:
    """The text that stands for one image of `n_tiles` tiles in a prompt: `<img>`, one `<IMG_CONTEXT>`
    per visual token of every tile, `</img>`."""
    if n_tiles < 1 or num_image_token < 1:
        raise ValueError(f"an image needs at least one tile and one token per tile, got {n_tiles} x {num_image_token}")
    return IMG_START + IMG_CONTEXT * (n_tiles * num_image_token) + IMG_END


def fill_image_slots(text: str, blocks: Iterator[str]) -> str:
    """`text` with each `<image>` placeholder replaced, in order, by the next of `blocks` (the caller
    checks that the counts agree)."""
    parts = text.split(IMAGE_PLACEHOLDER)
    return parts[0] + "".join(next(blocks) + p for p in parts[1:])


def bos_post_processor(bos_id: int, bos: str = BOS) -> processors.PostProcessor:
    """`<s>` before each sequence, the `add_bos_token=True` behaviour InternLM2 ships with.

    Only `transformers` and raw `tokenizers` users see it (with their add_special_tokens flag);
    `Tokenizer.encode` adds bos itself when asked, whatever post-processor a file carries.
    """
    return processors.TemplateProcessing(
        single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, bos_id)]
    )
