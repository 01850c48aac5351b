"""What one forward pass of training consumes: token rows plus the optional fields that each loss
needs (a loss mask for supervised fine-tuning, pair ids for reward models, rewards for RL).

A vision-language batch also carries its images' tiles and V2PE positions (`model_inputs`).

Rows are packed: `document_ids` marks the documents of a row (attention never crosses them,
positions restart), and `targets` holds IGNORE_INDEX wherever nothing is to be predicted (the
first token of a document, padding). A loss decides what it counts from these fields
(lmforge.train.losses); the trainer normalises by that count over the whole global batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from lmforge.model.loss import IGNORE_INDEX


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) long
    targets: torch.Tensor  # (B, L) long, IGNORE_INDEX where nothing is to be predicted
    document_ids: torch.Tensor  # (B, L) long
    loss_mask: torch.Tensor | None = None  # (B, L) bool: the tokens a loss may count (e.g. assistant turns)
    pair_ids: torch.Tensor | None = None  # (B,) long: rows with the same id form one comparison
    rewards: torch.Tensor | None = None  # (B,) or (B, L) float: per-row or per-token rewards
    seq_ends: torch.Tensor | None = None  # (B,) long: each row's last real token (reward models read it)
    ref_logps: torch.Tensor | None = None  # (B,) or (B, L) float: the reference model's log-probs (DPO, RL's KL)
    old_logps: torch.Tensor | None = None  # (B, L) float: log P(target) under the policy that sampled the row (RL)
    advantages: torch.Tensor | None = None  # (B,) float: each row's advantage (RL)
    # A vision-language model's inputs (lmforge.model.vision): the tiles of the batch's images, in
    # the order of their image-token runs (row by row), and the V2PE positions (fractional on images).
    pixel_values: torch.Tensor | None = None  # (N, 3, S, S) float
    position_ids: torch.Tensor | None = None  # (B, L) float

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """The optional inputs a model's forward takes beside input_ids and document_ids: the images
        and positions of a vision-language batch (none for text)."""
        return {k: v for k, v in (("pixel_values", self.pixel_values), ("position_ids", self.position_ids))
                if v is not None}

    @property
    def n_targets(self) -> int:
        """Target tokens counted by the next-token loss (inside the loss mask, if any)."""
        keep = self.targets != IGNORE_INDEX
        if self.loss_mask is not None:
            keep &= self.loss_mask
        return int(keep.sum())

    def to(self, device: torch.device | str) -> Batch:
        """The batch with every tensor on `device`."""
        return Batch(**{f.name: None if (t := getattr(self, f.name)) is None else t.to(device, non_blocking=True)
                        for f in dataclasses.fields(self)})
