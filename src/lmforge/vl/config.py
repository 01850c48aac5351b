"""The `[vl]` section of a recipe: the vision-language stages of `lmforge run` (InternVL3, arXiv
2504.10479; docs/papers.md §10), from the run's pre-trained language model to a chat model that
answers questions about images.

    vl_pretrain  native multimodal pre-training: a ViT and MLP projector joined to the pre-trained
                 language model, all trained together on captions, image questions and text rows
                 (the loss on text tokens only; section 2.2), with V2PE deltas drawn per image
    vl_sft       supervised fine-tuning on the image questions (loss on the answers; section 2.3)
    vl_mpo       Mixed Preference Optimization (section 2.4): answers sampled from the SFT model,
                 judged by the demo set's checkers into chosen / rejected pairs, then DPO + BCO + LM

The data is the generated demo set (`lmforge.vl.synth`): shapes, colours, counts, positions, charts,
digits and words, with questions in English and Chinese whose answers a checker can verify, so the
report shows held-out accuracy after each stage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmforge.config import check_fields
from lmforge.model.vision.config import DEFAULT_V2PE_DELTAS


@dataclass
class VLSection:
    enabled: bool = False
    # The vision tower (InternViT-style) and tiles; the language model is the run's pre-trained one.
    # vision_init: an InternVL checkpoint directory whose ViT starts the tower (its own sizes then
    # replace the vision_* and image/patch sizes below); empty: a new ViT from random weights.
    vision_init: str = ""
    image_size: int = 64          # the tile size, px
    patch_size: int = 8
    vision_dim: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    vision_mlp: int = 256
    downsample_ratio: float = 0.5  # pixel shuffle: 64 patches of a 64 px tile -> 16 tokens
    max_tiles: int = 1            # dynamic high-resolution tiling budget (+ a thumbnail when > 1)
    v2pe_deltas: list[float] = field(default_factory=lambda: list(DEFAULT_V2PE_DELTAS))
    v2pe_inference_delta: float = 1.0
    # Your own image-text data: InternVL chat JSONL files (lmforge.vl.format), trained on in
    # vl_pretrain and vl_sft beside the generated set (the loss on the "gpt" turns); bad records are
    # counted and skipped. Held-out accuracy is still measured on the generated set.
    data: list[str] = field(default_factory=list)
    # The generated demo set.
    train_images: int = 3000
    heldout_images: int = 200
    text_share: float = 0.2       # native pre-training: text rows per image-text sample
    seq_len: int = 128
    # Native multimodal pre-training.
    pretrain_steps: int = 300
    pretrain_lr: float = 2e-3
    global_batch: int = 16
    micro_batch: int = 16
    # Supervised fine-tuning on the questions.
    sft_steps: int = 150
    sft_lr: float = 1e-3
    # MPO: `mpo_samples` answers per question at `mpo_temperature`, for `mpo_questions` questions.
    mpo_steps: int = 60
    mpo_lr: float = 2e-4
    mpo_beta: float = 0.1
    mpo_questions: int = 256
    mpo_samples: int = 4
    mpo_temperature: float = 1.0
    mpo_pairs_batch: int = 8
    max_new_tokens: int = 12
    eval_examples: int = 4        # held-out images with the model's answers shown in the report

    def __post_init__(self) -> None:
        check_fields(self, {
            "image_size": ">= 1", "patch_size": ">= 1", "vision_dim": ">= 1", "vision_layers": ">= 1",
            "vision_heads": ">= 1", "vision_mlp": ">= 1", "downsample_ratio": "(0, 1]", "max_tiles": ">= 1",
            "v2pe_inference_delta": "(0, 1]", "train_images": ">= 1", "heldout_images": ">= 1",
            "text_share": "[0, 1)", "seq_len": ">= 8", "pretrain_steps": ">= 1", "pretrain_lr": "> 0",
            "global_batch": ">= 1", "micro_batch": ">= 1", "sft_steps": ">= 1", "sft_lr": "> 0",
            "mpo_steps": ">= 1", "mpo_lr": "> 0", "mpo_beta": "> 0", "mpo_questions": ">= 1",
            "mpo_samples": ">= 2", "mpo_temperature": "> 0", "mpo_pairs_batch": ">= 1", "max_new_tokens": ">= 1",
            "eval_examples": ">= 0", "v2pe_deltas": "(0, 1]"})
        if self.global_batch % self.micro_batch:
            raise ValueError(f"vl.global_batch={self.global_batch} must be a multiple of vl.micro_batch="
                             f"{self.micro_batch}")
        if not self.v2pe_deltas:
            raise ValueError("vl.v2pe_deltas is empty: give one or more deltas in (0, 1]")
