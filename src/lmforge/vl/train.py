"""Training an InternVL3-style model (arXiv 2504.10479, sections 2.2-2.4; docs/papers.md §10) with
the pre-training `Trainer` (FSDP2 from outside the model, checkpoints, exact resume through
`align.loop.fit`): native multimodal pre-training, SFT and MPO.

- `build_vl_model`: a vision tower (InternViT-style) and MLP projector joined to a pre-trained
  language model directory; the new parts start from random weights, the language model keeps its own.
- `demo_samples`: the generated demo set as training samples (captions and questions) plus text rows.
- `train_vl`: one stage's optimisation loop, then the export in the layout transformers loads as
  `InternVLForConditionalGeneration` (plus the tokenizer files).
- `preference_pairs` / `mpo_batches`: MPO's data, answers sampled from the model and judged by the
  demo set's checkers (chosen: a correct answer, the reference when no sample is; rejected: a wrong
  sample; questions the model always answers right give no pair), and the frozen reference's
  log-probabilities computed once on the very rows the policy trains on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from lmforge.align.loop import LoopResult, fit
from lmforge.model.vision import InternVL, VisionConfig, VLConfig, load_vision_tower, load_vl_model, save_vl_model
from lmforge.tokenizer.hf_files import copy_tokenizer_files
from lmforge.tokenizer.special import IMAGE_PLACEHOLDER, IMG_CONTEXT
from lmforge.train.batch import Batch
from lmforge.train.config import TrainSection
from lmforge.train.parallel import DistInfo
from lmforge.vl.hf_processor import write_processor_files
from lmforge.vl.rows import VLLoader, VLSample, caption_sample, conversation_sample, text_sample, vl_batch


def section_vl_config(section, llm_cfg, image_token_id: int, vision: VisionConfig | None = None) -> VLConfig:
    """The `[vl]` section's model configuration (its vision tower, or `vision`) on the language model;
    ValueError naming what is wrong (the recipe check calls it before any stage runs)."""
    vision = vision or VisionConfig(image_size=section.image_size, patch_size=section.patch_size,
                                    dim=section.vision_dim, n_layers=section.vision_layers,
                                    n_heads=section.vision_heads, mlp_dim=section.vision_mlp)
    return VLConfig(vision=vision, llm=llm_cfg, image_token_id=image_token_id,
                    downsample_ratio=section.downsample_ratio, v2pe_deltas=tuple(section.v2pe_deltas),
                    v2pe_inference_delta=section.v2pe_inference_delta)


def vl_config(section, llm_cfg, tok, vision: VisionConfig | None = None) -> VLConfig:
    """The model's configuration: the `[vl]` section's vision tower (or `vision`) on the language model."""
    image_id = tok.token_to_id(IMG_CONTEXT)
    if image_id is None:
        raise ValueError(f"the tokenizer has no {IMG_CONTEXT} token; train it with `[tokenizer] image_tokens = true`")
    return section_vl_config(section, llm_cfg, image_id, vision)


def build_vl_model(section, llm_dir: Path, tok, seed: int) -> InternVL:
    """A vision tower (new, or the ViT of `section.vision_init`) and a new projector on the pre-trained
    language model of `llm_dir`."""
    from lmforge.model import load_model

    llm = load_model(llm_dir).float()
    tower = load_vision_tower(section.vision_init) if section.vision_init else None
    model = InternVL(vl_config(section, llm.cfg, tok, tower.cfg if tower is not None else None))
    model.init_weights(seed)
    model.language_model.load_state_dict(llm.state_dict())
    if tower is not None:
        model.vision_model.load_state_dict(tower.state_dict())
    return model


def image_tiles(image, cfg: VLConfig, max_tiles: int) -> torch.Tensor:
    """An image as tiles of the model's ViT input size (and a thumbnail when more than one)."""
    from lmforge.vl.tiling import pixel_values

    return pixel_values(image, cfg.vision.image_size, max_tiles, use_thumbnail=True)


def question_messages(example, answer: str | None = None) -> list[dict]:
    """The user turn (the image, then the question) and, given an answer, the assistant's."""
    messages = [{"role": "user", "content": f"{IMAGE_PLACEHOLDER}\n{example.question}"}]
    return messages + ([{"role": "assistant", "content": answer}] if answer is not None else [])


def question_sample(tok, example, pixels: torch.Tensor, num_image_token: int, answer: str | None = None) -> VLSample:
    return conversation_sample(tok, question_messages(example, answer if answer is not None else example.answer),
                               [pixels], num_image_token, last_only=True)


def text_samples(shards_dir: Path, vocab_size: int, seq_len: int, n: int, seed: int) -> list[VLSample]:
    """`n` windows of seq_len + 1 tokens of the pre-training shards, split at their documents."""
    from lmforge.train.loader import TokenStream

    if n == 0:
        return []
    stream = TokenStream(shards_dir, vocab_size, seed)
    starts = np.random.default_rng(seed).integers(0, max(stream.n_tokens - seq_len - 1, 1), n)
    out = []
    for s in starts:
        tokens, docs = stream.window(0, int(s), seq_len + 1)
        cuts = np.flatnonzero(np.diff(docs)) + 1
        out += [text_sample(p.tolist()) for p in np.split(tokens, cuts) if len(p) > 1]
    return out


def demo_samples(tok, examples: Sequence, cfg: VLConfig, section, *, captions: bool) -> list[VLSample]:
    """Each example's question (and with `captions` its caption too) as training samples."""
    out = []
    for ex in examples:
        pixels = image_tiles(ex.image, cfg, section.max_tiles)
        out.append(question_sample(tok, ex, pixels, cfg.num_image_token))
        if captions:
            out.append(caption_sample(tok, pixels, ex.caption, cfg.num_image_token))
    return out


def record_samples(tok, records, cfg: VLConfig, section) -> list[VLSample]:
    """InternVL chat records (`lmforge.vl.format.VLRecord`) as training samples, the loss on the answers."""
    return [conversation_sample(tok, r.messages(), [image_tiles(im, cfg, section.max_tiles) for im in r.images],
                                cfg.num_image_token)
            for r in records]


def train_section(section, steps: int, lr: float, global_batch: int, micro_batch: int, seed: int) -> TrainSection:
    """The trainer's settings for a [vl] stage (its own loader; no validation, no spike skipping: a
    batch of a few dozen short answers swings too much for the z-score test)."""
    return TrainSection(steps=steps, lr=lr, seq_len=section.seq_len, global_batch=global_batch,
                        micro_batch=micro_batch, warmup_steps=min(20, max(steps // 10, 1)), schedule="cosine",
                        val_every=0, spike_zscore=0.0, ckpt_every=max(steps // 2, 1), seed=seed, log_every=25)


def train_vl(model: InternVL, loader, loss_fn, tc: TrainSection, info: DistInfo, out_dir: Path,
             console: Console) -> tuple[LoopResult, dict | None]:
    """Train `model` in place with `loss_fn` on `loader`'s batches: (the loop's result, the full state dict
    on the main process, gathered once at the end)."""
    from lmforge.train.trainer import Trainer

    trainer = Trainer(model.train(), tc, info, accum=loader.accum)
    result = fit(trainer, loader, loss_fn, out_dir, resume=True, console=console)
    trainer.close()
    state = None if result.interrupted else trainer.full_state_dict()
    return result, state


def export_vl(cfg: VLConfig, state: dict, tokenizer_dir: Path, out: Path, max_tiles: int = 1) -> Path:
    """The trained weights as an InternVL checkpoint (transformers' layout) with the tokenizer and the
    processor files (`AutoProcessor` loads an InternVLProcessor tiling into at most `max_tiles`, the
    `[vl]` section's budget)."""
    model = InternVL(cfg)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    save_vl_model(model, out)
    copy_tokenizer_files(tokenizer_dir, out)
    write_processor_files(out, cfg, cfg.vision.image_size, max_tiles)
    return out


def vl_loader(samples: Sequence[VLSample], cfg: VLConfig, section, global_batch: int, micro_batch: int,
              info: DistInfo, seed: int, pad_id: int) -> VLLoader:
    """Training rows of `samples`, each image's V2PE delta drawn from the config's choices."""
    return VLLoader(samples, section.seq_len, global_batch, micro_batch, cfg.image_token_id, list(cfg.v2pe_deltas),
                    info.dp_rank, info.dp_size, seed, pad_id)


# ---------------------------------------------------------------------------------------------------
# MPO: preference pairs judged by the checkers, and the reference's log-probabilities.

def preference_pairs(examples: Sequence, answers: Sequence[Sequence[str]], check, seed: int
                     ) -> tuple[list[tuple[object, str, str]], dict]:
    """(example, chosen, rejected) triples and counts: questions with a wrong sample give one pair."""
    rng = random.Random(seed)
    pairs, counts = [], {"questions": len(examples), "all_right": 0, "none_right": 0, "samples_right": 0,
                         "samples": 0}
    for ex, sampled in zip(examples, answers):
        verdicts = [check(ex, a) for a in sampled]
        right = [a for a, ok in zip(sampled, verdicts) if ok]
        wrong = [a for a, ok in zip(sampled, verdicts) if not ok]
        counts["samples"] += len(sampled)
        counts["samples_right"] += len(right)
        if not wrong:
            counts["all_right"] += 1
            continue
        if not right:
            counts["none_right"] += 1
        pairs.append((ex, rng.choice(right) if right else ex.answer, rng.choice(wrong)))
    counts["pairs"] = len(pairs)
    return pairs, counts


def pair_batch(samples: Sequence[VLSample], idx: Sequence[int], cfg: VLConfig, pad_id: int,
               ref: torch.Tensor | None = None) -> Batch:
    """Pairs `idx` (samples 2i chosen, 2i+1 rejected) as one row each, V2PE at the inference delta."""
    rows = [[j] for i in idx for j in (2 * i, 2 * i + 1)]
    longest = max(len(samples[r[0]].enc.ids) for r in rows) - 1
    b = vl_batch(samples, rows, longest, pad_id, cfg.image_token_id, cfg.v2pe_inference_delta)
    if ref is not None:
        b.ref_logps = ref[list(idx)].reshape(-1).float()
    return b


@torch.no_grad()
def reference_logps(model: InternVL, samples: Sequence[VLSample], cfg: VLConfig, pad_id: int,
                    chunk: int = 16) -> torch.Tensor:
    """log P(answer) of every pair's two answers under the frozen `model`, (pairs, 2)."""
    from lmforge.align.losses import reference_logps as logps_of

    n = len(samples) // 2
    model.eval()
    parts = [logps_of(model, pair_batch(samples, range(i, min(i + chunk, n)), cfg, pad_id))
             for i in range(0, n, chunk)]
    return torch.cat(parts).view(n, 2)


def load_vl(path: Path) -> InternVL:
    return load_vl_model(path).float()
