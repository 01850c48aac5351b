"""Log-probabilities of given tokens under the model: the one place that turns final hidden states
into log P(token). Scoring uses it (the perplexity filters of the data pipeline, held-out
perplexity and bits per byte, the log-likelihood "PPL" mode of the benchmarks), and so will the
policy and reference log-probabilities of DPO and RL.

The LM head is applied in chunks of rows, so the (tokens, vocabulary) logits never exist at once:
with InternLM2's 92,544-token vocabulary one 4k-token row's fp32 logits alone take 1.5 GB. The
softmax is taken in fp32 whatever the model's dtype.
"""

from __future__ import annotations

import torch

CHUNK_ELEMENTS = 1 << 24  # logits per chunk: 64 MiB in fp32


def target_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                    chunk_elements: int = CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """(log P(target), whether the target is the most likely token), each (N,), for hidden states
    (N, D), the LM head's matrix (V, D) and target ids (N,)."""
    rows = max(1, chunk_elements // weight.shape[0])
    logps, greedy = [], []
    for s in range(0, hidden.shape[0], rows):
        logp = (hidden[s:s + rows] @ weight.t()).float().log_softmax(-1)
        t = targets[s:s + rows, None]
        logps.append(logp.gather(-1, t)[:, 0])
        greedy.append(logp.argmax(-1) == t[:, 0])
    if not logps:
        return hidden.new_zeros(0, dtype=torch.float32), torch.zeros(0, dtype=torch.bool, device=hidden.device)
    return torch.cat(logps), torch.cat(greedy)


def token_logprobs(model, ids: torch.Tensor, **forward_kwargs) -> torch.Tensor:
    """log P(ids[:, t] | ids[:, :t]) for t = 1 .. T-1, shape (B, T-1), fp32: one forward pass over
    rows of token ids (B, T); keyword arguments go to `forward_hidden` (e.g. document_ids)."""
    hidden = model.forward_hidden(ids[:, :-1], **forward_kwargs)
    B, T = ids.shape
    logp, _ = target_logprobs(hidden.reshape(B * (T - 1), -1), model.head_weight(), ids[:, 1:].reshape(-1))
    return logp.view(B, T - 1)
