"""The vision-language stages of `lmforge run` (`[vl] enabled`; InternVL3, arXiv 2504.10479,
sections 2.2-2.4; docs/papers.md §10): native multimodal pre-training from the run's pre-trained
language model, SFT, then MPO. Each exports an InternVL checkpoint (`lmforge serve` takes it, and
transformers loads it as `InternVLForConditionalGeneration`) and measures held-out image-question
accuracy, so the report shows what each stage did. A killed stage resumes from its last checkpoint.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
from rich.console import Console

from lmforge.atomic import write_json
from lmforge.lifecycle.stage import RunStageInterrupted


@functools.cache
def demo_data(n_train: int, n_heldout: int, size: int, seed: int) -> tuple[list, list]:
    """The generated demo set's train and held-out examples (once per process)."""
    from lmforge.vl.synth import demo_split

    return demo_split(n_train, n_heldout, seed, size=size)


def _setup(recipe, folder: Path, console: Console):
    from lmforge.train.parallel import init_distributed

    folder.mkdir(parents=True, exist_ok=True)
    info = init_distributed(device=recipe.run.device)
    if info.world_size > 1:
        raise ValueError("the [vl] stages of `lmforge run` run in one process; train under torchrun with "
                         "lmforge.vl.train directly")
    vl = recipe.vl
    train, held_out = demo_data(vl.train_images, vl.heldout_images, vl.image_size, recipe.run.seed)
    return info, vl, train, held_out


def user_samples(recipe, tok, cfg, console: Console) -> list:
    """The samples of `[vl] data`, the user's InternVL chat JSONL files; bad records counted and skipped."""
    from lmforge.align.conversations import Skipped
    from lmforge.align.loop import report_skipped
    from lmforge.vl.format import read_vl_dataset
    from lmforge.vl.train import record_samples

    out = []
    for path in recipe.vl.data:
        skipped = Skipped()
        records = list(read_vl_dataset(path, skipped=skipped))
        report_skipped(path, skipped, console)
        out += record_samples(tok, records, cfg, recipe.vl)
    return out


def accuracy(model, tok, examples, section, out_dir: Path | None = None) -> dict:
    """Held-out image-question accuracy (greedy answers, the demo set's checkers)."""
    from lmforge.eval.vl_eval import image_qa_accuracy

    model.eval()
    return image_qa_accuracy(model, tok, examples, max_new_tokens=section.max_new_tokens,
                             tile_size=model.cfg.vision.image_size, max_tiles=section.max_tiles, out_dir=out_dir)


def blind_accuracy(model, tok, examples, section, seed: int) -> float:
    """Accuracy when each question gets another held-out example's image: what the language model
    guesses without looking; the gap to `accuracy` is what the images contribute."""
    import dataclasses
    import random

    images = [ex.image for ex in examples]
    random.Random(seed).shuffle(images)
    swapped = [dataclasses.replace(ex, image=im) for ex, im in zip(examples, images)]
    return accuracy(model, tok, swapped, section)["accuracy"]


def one_per_kind(samples: list[dict], n: int) -> list[dict]:
    """Up to `n` judged samples, the first of each kind before a second of any."""
    firsts, rest, seen = [], [], set()
    for s in samples:
        (rest if s["kind"] in seen else firsts).append(s)
        seen.add(s["kind"])
    return (firsts + rest)[:n]


def _brief(result: dict) -> dict:
    return {"accuracy": result["accuracy"], "by_kind": {k: v["accuracy"] for k, v in result["by_kind"].items()},
            "by_lang": {k: v["accuracy"] for k, v in result["by_lang"].items()}}


def _train_and_measure(name: str, recipe, info, model, loader, loss_fn, steps: int, lr: float, tok, tok_dir: Path,
                       held_out, folder: Path, console: Console, began: float, **facts) -> dict:
    """Train `model` for the stage, export it (with the tokenizer of `tok_dir`), measure held-out
    accuracy, write `<name>.json`; the stage's summary."""
    from lmforge.vl import train as vt

    vl = recipe.vl
    tc = vt.train_section(vl, steps, lr, loader.global_batch, loader.micro_batch, recipe.run.seed)
    result, state = vt.train_vl(model, loader, loss_fn, tc, info, folder, console)
    if result.interrupted:
        raise RunStageInterrupted(f"{name} stopped at step {result.steps}; run the same command to resume")
    model_dir = vt.export_vl(model.cfg, state, tok_dir, folder / "model", max_tiles=vl.max_tiles)
    after = accuracy(model, tok, held_out, vl, folder)
    summary = {**facts, "model": str(model_dir), "steps": result.steps, "final": result.last,
               "accuracy_after": {**_brief(after), "blind": blind_accuracy(model, tok, held_out, vl, recipe.run.seed)},
               "samples": one_per_kind(after["samples"], vl.eval_examples)}
    summary["seconds"] = time.perf_counter() - began
    write_json(folder / f"{name}.json", summary)
    return summary


def sample_answers(model, tok, examples, section, n: int, temperature: float, seed: int,
                   batch_rows: int = 64) -> list[list[str]]:
    """`n` sampled answers to each example's question (`eval.vl_generate.vl_samples`)."""
    from lmforge.eval.vl_generate import VLQuery, vl_samples

    return vl_samples(model, tok, [VLQuery([ex.image], ex.question) for ex in examples], n=n,
                      temperature=temperature, generator=torch.Generator().manual_seed(seed),
                      max_new_tokens=section.max_new_tokens, tile_size=model.cfg.vision.image_size,
                      max_tiles=section.max_tiles, batch_size=batch_rows)


def vl_pretrain_stage(recipe, llm_dir: Path, shards_dir: Path, folder: Path, console: Console) -> dict:
    """Native multimodal pre-training: captions, image questions and text rows, all weights trained."""
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.losses import NextTokenLoss
    from lmforge.vl import train as vt

    began = time.perf_counter()
    info, vl, train, held_out = _setup(recipe, folder, console)
    tok = Tokenizer.load(llm_dir)
    model = vt.build_vl_model(vl, llm_dir, tok, recipe.run.seed)
    cfg = model.cfg
    before = _brief(accuracy(model, tok, held_out, vl))  # the language model with an untrained eye
    image_samples = vt.demo_samples(tok, train, cfg, vl, captions=True) + user_samples(recipe, tok, cfg, console)
    n_text = round(len(image_samples) * vl.text_share / (1 - vl.text_share) / 4)  # a window splits into ~4 docs
    text = vt.text_samples(shards_dir / "train", cfg.llm.vocab_size, vl.seq_len, n_text, recipe.run.seed)
    loader = vt.vl_loader(image_samples + text, cfg, vl, vl.global_batch, vl.micro_batch, info, recipe.run.seed,
                          tok.pad_id or 0)
    console.print(f"[bold]vl_pretrain[/bold]: {model.num_params() / 1e6:.2f}M parameters "
                  f"({sum(p.numel() for p in model.vision_model.parameters()) / 1e6:.2f}M vision); "
                  f"{len(image_samples)} image-text samples + {len(text)} text rows, {cfg.num_image_token} tokens "
                  f"a tile; {vl.pretrain_steps} steps x {vl.global_batch} rows of {vl.seq_len}")
    return _train_and_measure("vl_pretrain", recipe, info, model, loader, NextTokenLoss(), vl.pretrain_steps,
                              vl.pretrain_lr, tok, llm_dir, held_out, folder, console, began,
                              params=model.num_params(), image_samples=len(image_samples), text_rows=len(text),
                              too_long=loader.too_long, accuracy_before=before)


def vl_sft_stage(recipe, start_dir: Path, folder: Path, console: Console) -> dict:
    """SFT on the image questions, the loss on the answers."""
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.losses import NextTokenLoss
    from lmforge.vl import train as vt

    began = time.perf_counter()
    info, vl, train, held_out = _setup(recipe, folder, console)
    tok = Tokenizer.load(start_dir)
    model = vt.load_vl(start_dir)
    samples = vt.demo_samples(tok, train, model.cfg, vl, captions=False)
    samples += user_samples(recipe, tok, model.cfg, console)
    loader = vt.vl_loader(samples, model.cfg, vl, vl.global_batch, vl.micro_batch, info, recipe.run.seed + 1,
                          tok.pad_id or 0)
    console.print(f"[bold]vl_sft[/bold]: {len(samples)} image questions; {vl.sft_steps} steps x {vl.global_batch} rows")
    return _train_and_measure("vl_sft", recipe, info, model, loader, NextTokenLoss(), vl.sft_steps, vl.sft_lr, tok,
                              start_dir, held_out, folder, console, began, questions=len(samples))


def vl_mpo_stage(recipe, sft_dir: Path, folder: Path, console: Console) -> dict:
    """MPO: sampled answers judged into pairs, DPO + BCO + LM against the frozen SFT model."""
    from lmforge.align.losses import MPOLoss
    from lmforge.align.pair_rows import PairLoader
    from lmforge.tokenizer import Tokenizer
    from lmforge.vl import train as vt
    from lmforge.vl.answers import check_answer

    began = time.perf_counter()
    info, vl, train, held_out = _setup(recipe, folder, console)
    tok = Tokenizer.load(sft_dir)
    model = vt.load_vl(sft_dir)
    cfg = model.cfg
    model.eval()
    questions = train[:vl.mpo_questions]
    answers = sample_answers(model, tok, questions, vl, vl.mpo_samples, vl.mpo_temperature, recipe.run.seed)
    pairs, counts = vt.preference_pairs(questions, answers, check_answer, recipe.run.seed)
    console.print(f"[bold]vl_mpo[/bold]: {counts['samples_right']}/{counts['samples']} sampled answers right; "
                  f"{counts['pairs']} pairs from {counts['questions']} questions ({counts['all_right']} always "
                  f"right, {counts['none_right']} never)")
    if not pairs:
        raise ValueError("vl_mpo: no question got a wrong sampled answer, so there is no preference pair; "
                         "raise vl.mpo_temperature or vl.mpo_questions")
    samples = []
    for ex, chosen, rejected in pairs:
        pixels = vt.image_tiles(ex.image, cfg, vl.max_tiles)
        samples += [vt.question_sample(tok, ex, pixels, cfg.num_image_token, chosen),
                    vt.question_sample(tok, ex, pixels, cfg.num_image_token, rejected)]
    pad = tok.pad_id or 0
    ref = vt.reference_logps(model, samples, cfg, pad)
    loader = PairLoader(len(pairs), lambda idx: vt.pair_batch(samples, idx, cfg, pad, ref),
                        min(vl.mpo_pairs_batch, len(pairs)), min(vl.mpo_pairs_batch, len(pairs)),
                        info.dp_rank, info.dp_size, recipe.run.seed)
    summary = _train_and_measure("vl_mpo", recipe, info, model, loader, MPOLoss(beta=vl.mpo_beta), vl.mpo_steps,
                                 vl.mpo_lr, tok, sft_dir, held_out, folder, console, began, pairs=counts)
    (folder / "examples").mkdir(exist_ok=True)
    for s in summary["samples"]:  # the report shows these images with the model's answers
        s["image"] = f"examples/{s['index']}.png"
        held_out[s["index"]].image.save(folder / s["image"])
    write_json(folder / "vl_mpo.json", summary)
    return summary
