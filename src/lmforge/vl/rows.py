"""Vision-language training rows: image-text samples as token ids, packed into rows with their
images' tiles and V2PE positions (InternVL3, arXiv 2504.10479, sections 2.1-2.3; docs/papers.md §10).

An image in the token stream is InternVL's `<img>` + one `<IMG_CONTEXT>` per visual token (tiles x
`num_image_token`) + `</img>`; the model splices the image's features in at the `<IMG_CONTEXT>`
positions (lmforge.model.vision.vlm). A sample is one of:

- a caption (pre-training's image-text pairs): `<s><img>...</img>\\n` + caption + `</s>`, the loss on
  the caption and `</s>`;
- a conversation (SFT, and the question-answer half of native pre-training): the InternLM2 chat
  format with each `<image>` placeholder of the user turns replaced by its image's tokens, the loss
  on the assistant turns;
- text (native multimodal pre-training mixes text-only rows in): every token learned.

`VLLoader` packs samples into rows as SFT does (`chat_rows.pack`), but never cuts one: a sample
longer than a row would lose image tokens, so it is counted and left out. Each micro-batch carries
the tiles of its images in the order of their image-token runs, row by row, and V2PE positions
with one delta per image, drawn from `deltas` by a generator seeded with (seed, step, the row's
samples), so a resumed run, and any number of processes, draws the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lmforge.align.chat_rows import Encoded, SFTLoader, build_rows, encode_conversation
from lmforge.model.vision.v2pe import image_runs, v2pe_position_ids
from lmforge.tokenizer.special import IMAGE_PLACEHOLDER, fill_image_slots, image_text
from lmforge.train.batch import Batch


@dataclass
class VLSample:
    enc: Encoded
    pixels: torch.Tensor | None  # (tiles, 3, S, S): its images' tiles in order; None for text

    @property
    def n_tiles(self) -> int:
        return 0 if self.pixels is None else len(self.pixels)


def caption_sample(tok, pixels: torch.Tensor, caption: str, num_image_token: int) -> VLSample:
    """An image-text pair: the image, then its caption learned."""
    head = [tok.bos_id] + tok.encode(image_text(len(pixels), num_image_token) + "\n")
    body = tok.encode(caption) + [tok.eos_id]
    return VLSample(Encoded(head + body, [False] * len(head) + [True] * len(body)), pixels)


def conversation_sample(tok, messages: Sequence[dict], images: Sequence[torch.Tensor], num_image_token: int,
                        last_only: bool = False) -> VLSample:
    """A chat with images: each `<image>` in the user turns, in order, becomes one image's tokens."""
    placeholders = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
    if placeholders != len(images):
        raise ValueError(f"the conversation has {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) but "
                         f"{len(images)} image(s); give one image per placeholder")
    blocks = iter([image_text(len(im), num_image_token) for im in images])
    out = [{**m, "content": fill_image_slots(m["content"], blocks)} for m in messages]
    pixels = torch.cat(list(images)) if images else None
    return VLSample(encode_conversation(tok, out, last_only=last_only), pixels)


def text_sample(ids: Sequence[int]) -> VLSample:
    """Text-only tokens, all learned."""
    return VLSample(Encoded(list(ids), [True] * len(ids)), None)


def vl_batch(samples: Sequence[VLSample], groups: Sequence[Sequence[int]], seq_len: int, pad_id: int,
             image_token_id: int, deltas: float | Sequence[float],
             generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Batch:
    """One micro-batch: packed rows (`chat_rows.build_rows`), its images' tiles and V2PE positions.
    `deltas`: a float for every image, or the choices to draw each image's delta from, with
    `generator` (or one generator per row, drawing that row's images' deltas)."""
    batch = build_rows([s.enc for s in samples], groups, seq_len, pad_id)
    tiles = [samples[i].pixels for g in groups for i in g if samples[i].pixels is not None]
    if tiles:
        batch.pixel_values = torch.cat(tiles)
    _, index = image_runs(batch.input_ids, image_token_id, batch.document_ids)
    if isinstance(deltas, (int, float)):
        per_image: float | list[float] = float(deltas)
    else:
        generators = generator if isinstance(generator, Sequence) else [generator] * len(groups)
        per_image = []
        for row, gen in zip(index, generators):
            n_images = len(torch.unique(row[row >= 0]))
            per_image += [float(deltas[i]) for i in torch.randint(len(deltas), (n_images,), generator=gen).tolist()]
    batch.position_ids = v2pe_position_ids(batch.input_ids, image_token_id, per_image, batch.document_ids)
    return batch


class VLLoader(SFTLoader):
    """Packed vision-language rows in a seeded order per epoch, as `SFTLoader`, with images."""

    def __init__(self, samples: Sequence[VLSample], seq_len: int, global_batch: int, micro_batch: int,
                 image_token_id: int, deltas: float | Sequence[float], dp_rank: int = 0, dp_size: int = 1,
                 seed: int = 0, pad_id: int = 0):
        fits = [s for s in samples if len(s.enc.ids) <= seq_len + 1]
        self.too_long = len(samples) - len(fits)
        if not fits:
            raise ValueError(f"none of the {len(samples)} samples fits a row of {seq_len + 1} tokens; "
                             "raise seq_len or use smaller images (fewer tiles)")
        super().__init__([s.enc for s in fits], seq_len, global_batch, micro_batch, dp_rank, dp_size, seed, pad_id)
        self.samples, self.image_token_id, self.deltas = fits, image_token_id, deltas
        self.step = 0

    def next_step(self) -> list[Batch]:
        self.step += 1
        return super().next_step()

    def build(self, groups: Sequence[Sequence[int]]) -> Batch:
        # One generator per row, seeded by the step and the row's samples: one process and N
        # processes (any micro-batch size) draw the same deltas for the same row.
        gens = [torch.Generator().manual_seed(int(np.random.default_rng([self.seed, self.step, *g]).integers(2**62)))
                for g in groups]
        return vl_batch(self.samples, groups, self.seq_len, self.pad_id, self.image_token_id, self.deltas, gens)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.step = int(state.get("step", 0))
