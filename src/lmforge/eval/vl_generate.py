"""Answers from an InternVL-style model: the image prompt, and greedy decoding with V2PE positions.

Paper: InternVL3, arXiv 2504.10479 (sections 2.1-2.2: the image in the prompt, V2PE at inference);
V2PE, arXiv 2412.09616, section 3; docs/papers.md §10.

A user turn with images is InternVL's chat layout in InternLM2's <|im_start|> format:

    <s><|im_start|>user\\n<img><IMG_CONTEXT> x (tiles x num_image_token)</img>\\n{question}<|im_end|>\\n
    <|im_start|>assistant\\n

Several images are numbered, `Image-1: <img>...</img>\\nImage-2: <img>...</img>\\n{question}`, unless
the question places them itself with `<image>` placeholders (one per image, InternVL's chat data
convention). The model fills the `<IMG_CONTEXT>` slots with its vision tokens in order.

Decoding is greedy (`vl_samples` also samples several answers, for MPO's preference pairs) and recomputes the whole
sequence at every step: the models evaluated here are tiny, and the vision-language forward has no
KV cache. Visual tokens advance the position by the
model's `v2pe_inference_delta`. Prompts are batched only with prompts of the same length: the
forward takes no attention mask, so padding would change the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lmforge.tokenizer.special import (IMAGE_PLACEHOLDER, IMAGE_TOKENS, IMG_CONTEXT, IMG_END, IMG_START,
                                       fill_image_slots, image_text)

MAX_NEW_TOKENS = 32
BATCH_SIZE = 8


@dataclass
class VLQuery:
    """One question about one or more images (PIL images, paths, bytes or data URLs)."""

    images: list
    question: str


def user_content(question: str, n_tiles: Sequence[int], num_image_token: int) -> str:
    """The user turn's text: the images' blocks before the question, or in its `<image>` slots."""
    written = [t for t in IMAGE_TOKENS if t in question]
    if written:
        raise ValueError(f"the question contains the image token(s) {written} as text; write {IMAGE_PLACEHOLDER} "
                         "where an image goes and pass the images separately")
    blocks = [image_text(n, num_image_token) for n in n_tiles]
    slots = question.count(IMAGE_PLACEHOLDER)
    if slots:
        if slots != len(blocks):
            raise ValueError(f"the question has {slots} {IMAGE_PLACEHOLDER} placeholder(s) but {len(blocks)} "
                             f"image(s) were given; use one placeholder per image, or none")
        return fill_image_slots(question, iter(blocks))
    if len(blocks) == 1:
        return f"{blocks[0]}\n{question}"
    return "".join(f"Image-{i}: {b}\n" for i, b in enumerate(blocks, 1)) + question


def vl_prompt_ids(tok, question: str, n_tiles: int | Sequence[int], num_image_token: int,
                  system: str | None = None, *, image_token_id: int | None = None) -> list[int]:
    """Token ids of a chat prompt asking `question` about images of `n_tiles` tiles each.

    The `<IMG_CONTEXT>` slots get `image_token_id` (the model's `cfg.image_token_id`; default:
    the tokenizer's id for `<IMG_CONTEXT>`), so a model whose image id is not the tokenizer's still
    sees its own. The tokenizer must know `<img>` and `</img>`."""
    n_tiles = [n_tiles] if isinstance(n_tiles, int) else list(n_tiles)
    missing = [t for t in (IMG_START, IMG_END) if tok.token_to_id(t) is None]
    if image_token_id is None:
        image_token_id = tok.token_to_id(IMG_CONTEXT)
        if image_token_id is None:
            missing.append(IMG_CONTEXT)
    if missing:
        raise ValueError(f"the tokenizer lacks the image token(s) {missing}; a vision-language tokenizer is "
                         f"trained with train_bpe(..., extra_special_tokens=IMAGE_TOKENS)")
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user_content(question, n_tiles, num_image_token)}]
    text = tok.render_chat(messages, add_generation_prompt=True)
    # Encode the text between the slots and put the ids in between: the same ids as encoding the
    # whole string (special tokens split it anyway), without tokenizing thousands of markers.
    pieces = text.split(IMG_CONTEXT)
    ids = tok.encode(pieces[0])
    for piece in pieces[1:]:
        ids.append(image_token_id)
        ids.extend(tok.encode(piece))
    return ids


def _device_dtype(model) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def _pil(image):
    from PIL import Image

    from lmforge.vl.images import load_image

    return image if isinstance(image, Image.Image) else load_image(image)


def image_tiles(image, tile_size: int, max_tiles: int) -> torch.Tensor:
    """(N, 3, S, S) pixel values of one image (loaded first when it is a path, bytes or data URL)."""
    from lmforge.vl import tiling

    return tiling.pixel_values(_pil(image), tile_size, max_tiles, use_thumbnail=True)


@torch.no_grad()
def decode(model, prompts: Sequence[list[int]], pixel_values: Sequence[torch.Tensor | None], *,
           stop_ids: Sequence[int], max_new_tokens: int = MAX_NEW_TOKENS, temperature: float = 0.0,
           generator: torch.Generator | None = None, banned_ids: Sequence[int | None] = (),
           vocab_size: int | None = None) -> list[list[int]]:
    """Continuations of equal-length prompts (one batch), each cut before its first stop id: greedy
    at temperature 0, else sampled from softmax(logits / temperature) with `generator` (a CPU one).

    pixel_values[i] holds the tiles of prompt i's images, in the order of their slots. The image
    token, `banned_ids` (the `<img>` markers) and ids from `vocab_size` on (a model's padded
    vocabulary beyond its tokenizer's) are never generated."""
    from lmforge.model.vision import v2pe_position_ids

    if len({len(p) for p in prompts}) != 1:
        raise ValueError("decode batches prompts of one length only (the forward takes no padding mask)")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    device, dtype = _device_dtype(model)
    tiles = [pv for pv in pixel_values if pv is not None and len(pv)]
    pv = torch.cat(tiles).to(device=device, dtype=dtype) if tiles else None
    ids = torch.tensor(list(prompts), dtype=torch.long, device=device)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=device)
    # A generated image token would ask the forward for features no tile provides.
    banned = [model.cfg.image_token_id, *[t for t in banned_ids if t is not None]]
    done = torch.zeros(len(prompts), dtype=torch.bool, device=device)
    out: list[list[int]] = [[] for _ in prompts]
    for _ in range(max_new_tokens):
        positions = v2pe_position_ids(ids, model.cfg.image_token_id, model.cfg.v2pe_inference_delta)
        logits = model(ids, pv, position_ids=positions, last_only=True)
        logits = (logits[:, -1] if logits.dim() == 3 else logits).float()
        logits[:, banned] = float("-inf")
        if vocab_size is not None:
            logits[:, vocab_size:] = float("-inf")
        if temperature == 0:
            nxt = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator)[:, 0].to(device)
        stopped = torch.isin(nxt, stops)
        for i, t in enumerate(nxt.tolist()):
            if not done[i] and not stopped[i]:
                out[i].append(t)
        done |= stopped
        if bool(done.all()):
            break
        ids = torch.cat([ids, nxt[:, None]], dim=1)
    return out


def greedy_decode(model, prompts: Sequence[list[int]], pixel_values: Sequence[torch.Tensor | None], *,
                  stop_ids: Sequence[int], max_new_tokens: int = MAX_NEW_TOKENS, **kwargs) -> list[list[int]]:
    """`decode` at temperature 0."""
    return decode(model, prompts, pixel_values, stop_ids=stop_ids, max_new_tokens=max_new_tokens, **kwargs)


def sample_decode(model, prompts: Sequence[list[int]], pixel_values: Sequence[torch.Tensor | None], *,
                  stop_ids: Sequence[int], max_new_tokens: int = MAX_NEW_TOKENS, temperature: float = 1.0,
                  generator: torch.Generator | None = None, **kwargs) -> list[list[int]]:
    """`decode` sampling at `temperature` (e.g. several answers per question for preference pairs)."""
    return decode(model, prompts, pixel_values, stop_ids=stop_ids, max_new_tokens=max_new_tokens,
                  temperature=temperature, generator=generator, **kwargs)


def vl_samples(model, tok, queries: Sequence[VLQuery], *, n: int = 1, temperature: float = 0.0,
               generator: torch.Generator | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
               tile_size: int | None = None, max_tiles: int = 6, system: str | None = None,
               batch_size: int = BATCH_SIZE) -> list[list[str]]:
    """`n` answers to each of `queries` (greedy at temperature 0, else sampled with `generator`):
    the queries' n rows each, batched `batch_size` rows at a time among prompts of equal length."""
    from lmforge.vl import tiling

    tile_size = tile_size or model.cfg.vision.image_size
    # Tile counts first, pixels per batch: a benchmark's tiles would not all fit in memory at once.
    images = [[_pil(im) for im in q.images] for q in queries]
    prompts = []
    for q, ims in zip(queries, images):
        counts = [tiling.num_tiles(im.width, im.height, tile_size, max_tiles, use_thumbnail=True) for im in ims]
        prompts.append(vl_prompt_ids(tok, q.question, counts, model.cfg.num_image_token, system,
                                     image_token_id=model.cfg.image_token_id))

    def pixels(i: int) -> torch.Tensor | None:
        return torch.cat([image_tiles(im, tile_size, max_tiles) for im in images[i]]) if images[i] else None

    stop_ids = tok.stop_ids
    banned = [tok.token_to_id(t) for t in IMAGE_TOKENS]
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(len(p), []).extend([i] * n)
    answers: list[list[str]] = [[] for _ in queries]
    for rows in groups.values():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            outs = decode(model, [prompts[i] for i in chunk], [pixels(i) for i in chunk], stop_ids=stop_ids,
                          max_new_tokens=max_new_tokens, temperature=temperature, generator=generator,
                          banned_ids=banned, vocab_size=tok.vocab_size)
            for i, o in zip(chunk, outs):
                answers[i].append(tok.decode(o, skip_special_tokens=True).strip())
    return answers


def vl_answers(model, tok, queries: Sequence[VLQuery], *, max_new_tokens: int = MAX_NEW_TOKENS,
               tile_size: int | None = None, max_tiles: int = 6, system: str | None = None,
               batch_size: int = BATCH_SIZE) -> list[str]:
    """Greedy answers to `queries`, batched among prompts of equal length."""
    return [a[0] for a in vl_samples(model, tok, queries, max_new_tokens=max_new_tokens, tile_size=tile_size,
                                     max_tiles=max_tiles, system=system, batch_size=batch_size)]


def vl_answer(model, tok, image, question: str, *, max_new_tokens: int = MAX_NEW_TOKENS,
              tile_size: int | None = None, max_tiles: int = 6, system: str | None = None) -> str:
    """The model's greedy answer to one question about one image."""
    return vl_answers(model, tok, [VLQuery([image], question)], max_new_tokens=max_new_tokens,
                      tile_size=tile_size, max_tiles=max_tiles, system=system)[0]
