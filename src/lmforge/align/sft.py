"""Supervised fine-tuning: `lmforge sft` and the `sft` stage of `lmforge run` (InternLM2 report,
arXiv 2403.17297, section 4.1; docs/papers.md §6).

From any HF InternLM2 / Llama directory, on conversations (a JSONL file, or the built-in checkable
tasks), with the loss on assistant tokens only and conversations packed several to a row. Full
fine-tuning runs on the pre-training trainer (FSDP2 under torchrun, checkpoints, resume); LoRA
(`lora_rank > 0`) trains adapters only and merges them at export. With the built-in tasks, the
held-out accuracy is measured by the inference engine before and after, so the stage reports
what it taught, not only a loss.

    out_dir/metrics.jsonl, checkpoints/, model/ (HF InternLM2 + tokenizer), sft.json (summary)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lmforge.align.chat_rows import SFTLoader, encode_conversation
from lmforge.align.config import TASK_DATA, SFTSection
from lmforge.align.conversations import Skipped, read_conversations
from lmforge.align.loop import fit, report_skipped, setup
from lmforge.atomic import write_json
from lmforge.train.losses import NextTokenLoss


def task_splits(cfg, split: str = "train") -> tuple[list, list]:
    """(training, held-out) examples of the built-in tasks for a section with `tasks`, `*_examples`,
    `seed`; the training ones from `split` ("train", or "rl" for online RL's own prompts)."""
    from lmforge.align.tasks import make_examples

    tasks = cfg.tasks or None
    return (make_examples(cfg.train_examples, cfg.seed, split, tasks),
            make_examples(cfg.eval_examples, cfg.seed, "test", tasks))


def sft_conversations(cfg: SFTSection, console: Console) -> tuple[list[list[dict]], list]:
    """(training conversations, held-out task examples: empty for a JSONL file)."""
    system = cfg.system_prompt or None
    if cfg.data == TASK_DATA:
        train, held_out = task_splits(cfg)
        return [ex.messages(system) for ex in train], held_out
    skipped = Skipped()
    convs = read_conversations(cfg.data, skipped=skipped)
    report_skipped(cfg.data, skipped, console)
    if system:
        convs = [c if c[0]["role"] == "system" else [{"role": "system", "content": system}, *c] for c in convs]
    return convs, []


def measure_accuracy(model_dir: Path, examples: list, cfg: SFTSection, device: str,
                     with_pass_k: bool = False) -> dict | None:
    """Greedy task accuracy (lmforge.align.accuracy.task_accuracy), with "pass_at_k" added when
    `with_pass_k` and cfg.pass_k > 0: {task: share of prompts any of cfg.pass_k answers at
    cfg.pass_temperature gets right}."""
    if not examples:
        return None
    from lmforge.align.accuracy import task_accuracy, task_pass_at_k
    from lmforge.inference import load_for_inference

    model, tok = load_for_inference(model_dir, device=device)
    out = task_accuracy(model, tok, examples, cfg.max_new_tokens, cfg.system_prompt or None)
    if with_pass_k and cfg.pass_k:
        out["pass_at_k"] = task_pass_at_k(model, tok, examples, cfg.pass_k, cfg.pass_temperature, cfg.max_new_tokens,
                                          cfg.system_prompt or None, seed=cfg.seed)
    return out


def sft(cfg: SFTSection, out_dir: str | Path, *, resume: bool = True, console: Console | None = None,
        device: str = "auto") -> dict:
    """Fine-tune `cfg.init_from` on the section's conversations; returns the summary (also sft.json)."""
    from lmforge.align.lora import apply_lora, merge_lora
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.trainer import Trainer

    out_dir, info, console = setup("sft", cfg, out_dir, device, console)
    if cfg.lora_rank and info.distributed:
        raise ValueError("sft.lora_rank > 0 runs in one process; use full fine-tuning (lora_rank = 0) under torchrun")
    began = time.perf_counter()
    tok = Tokenizer.load(cfg.init_from)
    convs, held_out = sft_conversations(cfg, console)
    encoded = [encode_conversation(tok, c) for c in convs]
    trained_tokens = sum(sum(e.mask) for e in encoded)
    before = measure_accuracy(Path(cfg.init_from), held_out, cfg, str(info.device)) if info.is_main else None

    model = load_model(cfg.init_from).float().train()
    adapters = apply_lora(model, cfg.lora_rank, cfg.lora_alpha, tuple(cfg.lora_targets), cfg.seed) \
        if cfg.lora_rank else []
    if info.is_main and not adapters:  # the stage's settings: `lmforge convert` (and POLAR's pool) read checkpoints
        write_json(out_dir / "config.json", {"model": dataclasses.asdict(model.cfg), "train": {"tokenizer": cfg.init_from}})
    tc = cfg.train_section()
    loader = SFTLoader(encoded, cfg.seq_len, cfg.global_batch, cfg.micro_batch, info.dp_rank, info.dp_size, cfg.seed,
                       pad_id=tok.pad_id or 0)
    trainer = Trainer(model, tc, info, accum=loader.accum)
    n_train = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    console.print(f"[bold]sft[/bold]: {len(encoded)} conversations ({trained_tokens:,} assistant tokens, "
                  f"{loader.truncated} cut to {cfg.seq_len + 1} tokens) in {loader.rows_per_epoch} packed rows; "
                  f"{cfg.steps} steps x {cfg.global_batch} rows; "
                  + (f"LoRA r={cfg.lora_rank} on {len(adapters)} layers, " if adapters else "full fine-tuning, ")
                  + f"{n_train / 1e6:.2f}M trainable parameters")
    result = fit(trainer, loader, NextTokenLoss(), out_dir, resume=resume, console=console)
    trainer.close()
    summary = {"conversations": len(encoded), "assistant_tokens": trained_tokens, "truncated": loader.truncated,
               "steps": result.steps, "final_loss": result.last.get("loss"), "lora_rank": cfg.lora_rank,
               "trainable_params": n_train, "interrupted": result.interrupted}
    if result.interrupted:
        return summary
    if adapters:
        merge_lora(trainer.model)
    model_dir = trainer.export(out_dir / "model", cfg.init_from)
    if info.is_main:
        after = measure_accuracy(model_dir, held_out, cfg, str(info.device), with_pass_k=True)
        summary.update(model=str(model_dir), seconds=time.perf_counter() - began,
                       accuracy_before=before and before["accuracy"], accuracy_after=after and after["accuracy"],
                       samples=after and after["samples"], one_answer=after and after["one_answer"],
                       pass_at_k=after and after.get("pass_at_k") and
                       {"k": cfg.pass_k, "temperature": cfg.pass_temperature, "accuracy": after["pass_at_k"]},
                       config=dataclasses.asdict(cfg))
        write_json(out_dir / "sft.json", summary)
        if after:
            print_accuracy(before["accuracy"], after["accuracy"], console, ceiling=after.get("pass_at_k"),
                           ceiling_name=f"pass@{cfg.pass_k} (T {cfg.pass_temperature})")
    return summary


def print_accuracy(before: dict, after: dict, console: Console, title: str = "held-out task accuracy",
                   ceiling: dict | None = None, ceiling_name: str = "") -> None:
    """Before / after per task; `ceiling`: another column, pass@k (named `ceiling_name`)."""
    table = Table(title=title)
    for col in ("task", "before", "after", *([ceiling_name] if ceiling else [])):
        table.add_column(col, justify="left" if col == "task" else "right")
    for task in after:
        table.add_row(task, f"{100 * before.get(task, 0):.1f}%", f"{100 * after[task]:.1f}%",
                      *([f"{100 * ceiling.get(task, 0):.1f}%"] if ceiling else []))
    console.print(table)
