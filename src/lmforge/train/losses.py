"""The trainer's pluggable losses. Each says what it counts (tokens, pairs) and returns its batch's
share of the mean over the whole global batch: the sum over the batch's items divided by the
global count the trainer passes in. So micro-batches of any sizes accumulate, and one process and
N processes compute the same loss: normalised by items, never by the number of processes.

A loss runs the model itself, because a loss over the LM head has to run inside the model's
forward (`InternLM2.forward(loss_fn=...)`), where FSDP has the head's weights gathered.
Supervised fine-tuning, reward models, DPO and PPO each add a class with the same three members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from lmforge.model.loss import IGNORE_INDEX, linear_lm_loss
from lmforge.train.batch import Batch


class LossFn(Protocol):
    log_key: str  # the part logged as `loss` (per counted item) and watched for spikes

    def count(self, batch: Batch) -> int:
        """How many items (tokens, pairs) this batch contributes to the normaliser."""

    def __call__(self, model: torch.nn.Module, batch: Batch, divisor: float
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the loss summed over the batch's counted items / divisor, its parts likewise, for logging)."""


@dataclass
class NextTokenLoss:
    """Cross-entropy of the next token plus Baichuan 2's max-z penalty (pre-training; with a loss
    mask, supervised fine-tuning on the masked-in tokens only)."""

    z_loss: float = 0.0
    log_key: str = "ce"

    def count(self, batch: Batch) -> int:
        return batch.n_targets

    def __call__(self, model: torch.nn.Module, batch: Batch, divisor: float
                 ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        targets = batch.targets
        if batch.loss_mask is not None:
            targets = targets.masked_fill(~batch.loss_mask, IGNORE_INDEX)

        def head_loss(hidden: torch.Tensor, head_weight: torch.Tensor):
            return linear_lm_loss(hidden, head_weight, targets, self.z_loss, divisor=divisor)

        return model(batch.input_ids, document_ids=batch.document_ids, loss_fn=head_loss, **batch.model_inputs())
