"""The InternVL3-style vision-language model: ViT -> drop CLS -> pixel shuffle -> MLP projector ->
InternLM2 (InternVL3, arXiv 2504.10479, section 2.1, "ViT-MLP-LLM"; docs/papers.md §10).

Each tile (N, 3, S, S) becomes `cfg.num_image_token` embeddings of the LLM's width; they replace, in
order, the embeddings of the `cfg.image_token_id` placeholders of the text (the `<IMG_CONTEXT>`
tokens of InternVL's chat format), and the decoder runs on the spliced embeddings. Positions are the
caller's (V2PE positions from lmforge.model.vision.v2pe in training); by default the config's fixed
inference delta (1.0: plain integer positions, as transformers' InternVL).

Plain PyTorch, as lmforge.model: `blocks()` lists the transformer blocks of both towers for a
parallelism or activation checkpointing applied from outside. The top-level names are InternVL's
(`vision_model`, `mlp1.{0,1,3}`, `language_model`); inside, the ViT has transformers' InternVL names
and the decoder InternLM2's (lmforge.model.vision.hf maps them to transformers' layout).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lmforge.model.loss import linear_lm_loss
from lmforge.model.model import InternLM2
from lmforge.model.vision.config import VLConfig
from lmforge.model.vision.pixel_shuffle import shuffle_tokens
from lmforge.model.vision.v2pe import v2pe_position_ids
from lmforge.model.vision.vit import InternViT


class InternVL(nn.Module):
    def __init__(self, cfg: VLConfig):
        super().__init__()
        self.cfg = cfg
        self.vision_model = InternViT(cfg.vision)
        d_in, d = cfg.projector_in_dim, cfg.llm.dim
        # InternVL's mlp1: LayerNorm, Linear, GELU, Linear (indices 0, 1, 3 hold the weights).
        self.mlp1 = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d))
        self.language_model = InternLM2(cfg.llm)

    def init_weights(self, seed: int | None = None) -> None:
        """The decoder's init (InternLM2.init_weights), the ViT's (InternViT.init_weights), and
        N(0, llm init_std) matrices / zero biases / unit LayerNorm for the projector."""
        self.language_model.init_weights(seed)
        gen = torch.Generator().manual_seed(seed + 1) if seed is not None else None
        self.vision_model.init_weights(gen)
        with torch.no_grad():
            norm, fc1, fc2 = self.mlp1[0], self.mlp1[1], self.mlp1[3]
            norm.weight.fill_(1.0)
            norm.bias.zero_()
            for fc in (fc1, fc2):
                fc.weight.copy_(torch.randn(fc.weight.shape, generator=gen) * self.cfg.llm.init_std)
                fc.bias.zero_()

    def blocks(self) -> list[nn.Module]:
        """Every transformer block, vision then language, for FSDP wrapping and checkpointing."""
        return list(self.vision_model.encoder.layer) + list(self.language_model.layers)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) tiles -> (N, num_image_token, llm dim): ViT, drop CLS, pixel shuffle, mlp1."""
        patches = self.vision_model(pixel_values)[:, 1:]
        return self.mlp1(shuffle_tokens(patches, self.cfg.downsample_ratio))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings (B, T, dim) with the image features spliced, in order (row-major over the
        batch, tile after tile), at the positions where input_ids == cfg.image_token_id."""
        h = self.language_model.tok_embeddings(input_ids)
        is_img = input_ids == self.cfg.image_token_id
        n_tokens = int(is_img.sum().item())
        n_tiles = 0 if pixel_values is None else pixel_values.shape[0]
        if n_tokens != n_tiles * self.cfg.num_image_token:
            raise ValueError(f"input_ids hold {n_tokens} image tokens (id {self.cfg.image_token_id}) but "
                             f"{n_tiles} tile(s) x {self.cfg.num_image_token} tokens per tile = "
                             f"{n_tiles * self.cfg.num_image_token} image features; put num_image_token "
                             "placeholders in the text for every tile")
        if n_tiles == 0:
            if not self.training and not self._vision_sharded():
                return h
            # Text rows in training, and under FSDP always, still run the vision tower on no tiles
            # (zero gradients): under FSDP every process must take part in each block's gathers,
            # images or not (InternVL runs a dummy image for the same reason).
            size = self.cfg.vision.image_size
            pixel_values = h.new_zeros(0, 3, size, size)
        feats = self.image_features(pixel_values).to(h.dtype)
        return h.masked_scatter(is_img.unsqueeze(-1), feats)

    def _vision_sharded(self) -> bool:
        """Whether FSDP2 shards the vision tower (its parameters are DTensors)."""
        return hasattr(next(self.vision_model.parameters()), "full_tensor")

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None, *,
                position_ids: torch.Tensor | None = None, document_ids: torch.Tensor | None = None,
                loss_fn=None, targets: torch.Tensor | None = None, z_loss: float = 0.0, last_only: bool = False,
                **kwargs):
        """InternLM2.forward's contract (logits, or loss_fn's / the targets' loss) on the spliced
        embeddings. position_ids: RoPE positions, float for V2PE; default the config's
        v2pe_inference_delta (1.0: 0, 1, ... per row or document). Further keyword arguments
        (kv_cache, padding_mask, rope_len, mask) go to InternLM2.forward_hidden; with a kv_cache the
        cache decides positions, so V2PE applies only without one."""
        h = self.embed(input_ids, pixel_values)
        delta = self.cfg.v2pe_inference_delta
        if position_ids is None and delta != 1.0 and kwargs.get("kv_cache") is None:
            position_ids = v2pe_position_ids(input_ids, self.cfg.image_token_id, delta, document_ids)
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        if document_ids is not None:
            kwargs["document_ids"] = document_ids
        lm = self.language_model
        hidden = lm.forward_hidden(inputs_embeds=h, **kwargs)
        if loss_fn is not None:
            return loss_fn(hidden, lm.head_weight())
        if targets is not None:
            return linear_lm_loss(hidden, lm.head_weight(), targets, z_loss)
        return lm.logits(hidden[:, -1:] if last_only else hidden)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


__all__ = ["InternVL"]
