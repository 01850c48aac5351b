"""V2PE, Variable Visual Position Encoding (V2PE, arXiv 2412.09616, section 3; used by InternVL3,
arXiv 2504.10479, section 2.2; docs/papers.md §10).

Visual tokens get smaller position steps than text tokens, so long image sequences use less of the
RoPE window:

    p_0 = 0,   p_i = p_{i-1} + 1        if token i is text,
               p_i = p_{i-1} + delta_m  if token i belongs to image m,

with one delta per image (delta <= 1), and the text after an image resuming at the next whole
position: ceil(p of the image's last token) + 1, as the V2PE reference code does (for InternVL's
256-token tiles and deltas >= 1/256 an image's advance is a whole number and the ceil changes
nothing; it matters for small demo tiles). In training each image draws delta from {1, 1/2, ..., 1/256}
(`sample_deltas`); at inference one fixed delta is used. delta = 1 for every image gives the plain
0, 1, ..., T - 1 positions. The positions are fractional and go straight into RoPE
(lmforge.model.rope.cos_sin takes float positions). Each contiguous run of image tokens is one image
(all tiles of a dynamically tiled image are one run; InternVL's <img> ... </img> markers separate
images). With packed documents positions restart at 0 at each document, and a run is cut there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def image_runs(input_ids: torch.Tensor, image_token_id: int, document_ids: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(is_image (B, T) bool, image index (B, T) long): which tokens are image tokens, and for each
    the index of its image, counting contiguous runs in row-major order over the batch (-1 for text)."""
    is_img = input_ids == image_token_id
    starts = is_img.clone()
    continues = is_img[:, 1:] & is_img[:, :-1]
    if document_ids is not None:
        continues &= document_ids[:, 1:] == document_ids[:, :-1]
    starts[:, 1:] &= ~continues
    index = starts.flatten().cumsum(0).view_as(input_ids) - 1
    return is_img, torch.where(is_img, index, torch.full_like(index, -1))


def v2pe_position_ids(input_ids: torch.Tensor, image_token_id: int, deltas: float | Sequence[float] | torch.Tensor,
                      document_ids: torch.Tensor | None = None) -> torch.Tensor:
    """V2PE positions (B, T) in float32 for input_ids (B, T).

    deltas: one float for every image, or one per image in order (contiguous runs of image tokens,
    row-major over the batch). document_ids (B, T): packed documents; positions restart per document.
    """
    is_img, index = image_runs(input_ids, image_token_id, document_ids)
    n_images = int(index.max().item()) + 1 if is_img.any() else 0
    if isinstance(deltas, (int, float)):
        per_image = torch.full((max(n_images, 1),), float(deltas), dtype=torch.float64, device=input_ids.device)
    else:
        per_image = torch.as_tensor(deltas, dtype=torch.float64, device=input_ids.device).flatten()
        if per_image.numel() != n_images:
            raise ValueError(f"got {per_image.numel()} V2PE delta(s) for {n_images} image(s) "
                             "(contiguous runs of the image token); pass one per image, or one float for all")
        per_image = per_image if n_images else per_image.new_ones(1)
    B, T = input_ids.shape
    starts = torch.zeros_like(input_ids, dtype=torch.bool)
    starts[:, 0] = True
    if document_ids is not None:
        starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
    # float64 steps: 1/256 steps over tens of thousands of tokens stay exact to float32.
    one = torch.ones((), dtype=torch.float64, device=input_ids.device)
    step = torch.where(is_img, per_image[index.clamp(min=0)], one)
    step = step.masked_fill(starts, 0.0)  # a document's first token is at 0
    if n_images:
        # Every image starts from a whole position, so ceil(its last position) - its last position
        # is ceil(advance) - advance: added to the step of the token after the image.
        advance = torch.zeros(n_images, dtype=torch.float64, device=input_ids.device)
        advance.scatter_add_(0, index[is_img], step[is_img])
        pad = torch.ceil(advance - 1e-9) - advance
        last = is_img.clone()
        last[:, :-1] &= ~(is_img[:, 1:] & ~starts[:, 1:])  # the last token of each run
        after = torch.zeros_like(step)
        after[:, 1:] = torch.where(last[:, :-1], pad[index[:, :-1].clamp(min=0)], 0.0)
        step = step + after.masked_fill(starts, 0.0)
    total = step.cumsum(dim=1)
    idx = torch.arange(T, device=input_ids.device).expand(B, T)
    start_of = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values
    # p_i = the sum of the steps after the document's first token (whose step is 0) up to token i.
    return (total - total.gather(1, start_of)).float()


def sample_deltas(n_images: int, choices: Sequence[float], generator: torch.Generator | None = None) -> list[float]:
    """One V2PE delta per image, drawn uniformly from `choices` (training; VLConfig.v2pe_deltas)."""
    if not choices:
        raise ValueError("sample_deltas: choices is empty")
    picks = torch.randint(len(choices), (n_images,), generator=generator)
    return [float(choices[i]) for i in picks.tolist()]


__all__ = ["v2pe_position_ids", "sample_deltas", "image_runs"]
