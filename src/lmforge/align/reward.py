"""The reward model: the language model's transformer with a linear head that reads the hidden state
of a final reward token and gives one scalar (InternLM2 report, arXiv 2403.17297, section 4.2: "a
linear head on a final special token"; docs/papers.md §7). It starts from the SFT (or any) model;
the LM head is dropped.

The reward token is the tokenizer's EOS `</s>`, appended after the rendered conversation (the chat
template ends the answer with `<|im_end|>\\n`), so no new vocabulary entry is needed. The export is a
Llama directory with `score.weight` that `transformers` loads as `LlamaForSequenceClassification`
(num_labels = 1; it reads the last token that is not padding), with the tokenizer; `load_reward_model`
reads it back.

Reading: `ends` are positions in the rows given (a critic's every completion token, `ValueLoss`);
`seq_ends` are each sequence's reward token in the whole rows (`Batch.seq_ends`, `RewardLoss`),
read by `read_seq_ends`, which the sequence-parallel wiring swaps for a read over the group when
the rows given are a shard (`lmforge.train.seqpar.ends`). This file stays free of distribution code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from lmforge.atomic import write_atomic
from lmforge.model import InternLM2, ModelConfig
from lmforge.model.hf import (CONFIG_NAME, write_shards, config_to_hf, from_llama_names, llama_refusal, read_config,
                              read_tensors, to_internlm2_names, to_llama_names)


def read_rows(hidden: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """The hidden states (N, D) at flat positions `ends` (N,) of the rows `hidden` (B, T, D) holds."""
    return hidden.reshape(-1, hidden.shape[-1])[ends]


class RewardModel(InternLM2):
    """InternLM2 blocks + `score`, a (1, dim) linear head on the reward token's hidden state."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        del self.output  # a reward model has no LM head
        self.score = nn.Linear(cfg.dim, 1, bias=False)
        # (hidden, seq_ends) -> (N, D); swapped from outside for a read over a sequence-parallel group
        self.read_seq_ends = read_rows

    @classmethod
    def from_lm(cls, lm: InternLM2, seed: int = 0) -> RewardModel:
        """A reward model with the LM's transformer weights and a fresh head N(0, init_std)."""
        with torch.device("meta"):
            rm = cls(lm.cfg)
        sd = {k: v for k, v in lm.state_dict().items() if not k.startswith("output.")}
        gen = torch.Generator().manual_seed(seed)
        sd["score.weight"] = torch.randn(1, lm.cfg.dim, generator=gen) * lm.cfg.init_std
        rm.load_state_dict(sd, assign=True, strict=True)
        return rm

    def linear_groups(self):
        return super().linear_groups()[:-1]

    def forward(self, input_ids: torch.Tensor, *, ends: torch.Tensor | None = None,
                seq_ends: torch.Tensor | None = None, loss_fn=None, **kwargs):
        """Rewards (N,) fp32 read at flat positions (row * T + column: several sequences may be packed
        in a row, with `document_ids`), given as one of: `ends` (N,), positions in the rows `input_ids`
        (B, T); `seq_ends` (N,), each sequence's reward token in the whole rows, which are `input_ids`
        in one process and of which `input_ids` is this rank's shard under sequence parallelism. With
        loss_fn, loss_fn(rewards) (run inside forward, where FSDP has the weights gathered)."""
        if (ends is None) == (seq_ends is None):
            raise TypeError("RewardModel reads either `ends` (positions in the rows given) or `seq_ends` "
                            "(reward tokens in the whole rows), exactly one of them")
        hidden = self.forward_hidden(input_ids, **kwargs)
        h = read_rows(hidden, ends) if ends is not None else self.read_seq_ends(hidden, seq_ends)
        rewards = self.score(h).squeeze(-1).float()
        return loss_fn(rewards) if loss_fn is not None else rewards


def reward_ids(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Token ids a reward model scores: the rendered conversation (ending with the assistant's answer)
    and the reward token."""
    if tokenizer.eos_id is None:
        raise ValueError("the tokenizer has no EOS token to serve as the reward token")
    return tokenizer.encode(tokenizer.render_chat(messages, add_generation_prompt=False)) + [tokenizer.eos_id]


def pad_rows(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows (B, max len) and the flat position (row * T + column) of each row's last real
    token (B,), as `RewardModel.forward` reads it."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return ids, torch.tensor([i * T + len(s) - 1 for i, s in enumerate(seqs)], dtype=torch.long)


@torch.no_grad()
def score_ids(rm: RewardModel, seqs: Sequence[Sequence[int]], pad_id: int, batch: int = 32) -> torch.Tensor:
    """The reward of each token sequence (ending with its reward token), (N,) fp32, in padded batches."""
    rm.eval()
    device = next(rm.parameters()).device
    out = []
    for i in range(0, len(seqs), batch):
        ids, ends = pad_rows(seqs[i:i + batch], pad_id)
        out.append(rm(ids.to(device), ends=ends.to(device)).cpu())
    return torch.cat(out) if out else torch.zeros(0)


def score(rm: RewardModel, tokenizer, conversations: Sequence[Sequence[dict]], batch: int = 32) -> torch.Tensor:
    """The reward of each conversation (its last message the answer being judged), (N,) fp32."""
    return score_ids(rm, [reward_ids(tokenizer, c) for c in conversations], tokenizer.pad_id or 0, batch)


def save_reward_model(rm: RewardModel, path: str | Path, tokenizer_dir: str | Path | None = None) -> Path:
    """Write `rm` as a `LlamaForSequenceClassification` directory (plus the tokenizer files); with
    smeared keys or QK-norm, which Llama lacks, in the InternLM2 layout (`InternLM2ForRewardModel`), which
    `load_reward_model` reads."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().float().contiguous() for k, v in rm.state_dict().items()}
    body = {k: v for k, v in sd.items() if k != "score.weight"}
    fmt = "internlm2" if llama_refusal(rm.cfg) else "llama"
    named = to_internlm2_names(body) if fmt == "internlm2" else to_llama_names(body, rm.cfg)
    named["score.weight"] = sd["score.weight"]
    write_shards(named, path, 1 << 62)
    config = config_to_hf(rm.cfg.replace(norm_head=False), fmt, torch.float32)
    arch = "InternLM2ForRewardModel" if fmt == "internlm2" else "LlamaForSequenceClassification"
    config.update(architectures=[arch], num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    # The reward token is EOS; transformers reads the last token that is not `pad_token_id`, so the
    # pad id must differ from it (or be unset, for unpadded single rows).
    if config.get("pad_token_id") == config.get("eos_token_id"):
        config["pad_token_id"] = None
    write_atomic(path / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    if tokenizer_dir:
        from lmforge.tokenizer.hf_files import copy_tokenizer_files

        copy_tokenizer_files(tokenizer_dir, path)
    return path


def load_reward_model(path: str | Path, device: str | torch.device = "cpu") -> RewardModel:
    """Read a reward model written by `save_reward_model` (or any Llama sequence classifier with one label)."""
    path = Path(path)
    cfg, fmt = read_config(path)
    raw = read_tensors(path)
    if "score.weight" not in raw or raw["score.weight"].shape[0] != 1:
        raise ValueError(f"{path}: not a reward model (expected a `score.weight` of shape (1, hidden_size); "
                         "write one with `lmforge rm`)")
    head = raw.pop("score.weight")
    sd = from_llama_names(raw, cfg, path) if fmt == "llama" else {k.removeprefix("model."): v for k, v in raw.items()}
    sd["score.weight"] = head
    with torch.device("meta"):
        rm = RewardModel(cfg)
    rm.load_state_dict({k: v.float() for k, v in sd.items()}, assign=True, strict=True)
    return rm.to(device).eval()
