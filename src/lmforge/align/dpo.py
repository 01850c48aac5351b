"""Direct preference optimisation: `lmforge dpo`, the offline baseline beside RLHF (DPO, Rafailov
et al., arXiv 2305.18290; SimPO, Meng et al., arXiv 2405.14734; losses in lmforge.align.losses).

The policy starts from `init_from` (the SFT model) and learns from preference pairs (a JSONL file or
the tasks' checkers: correct > wrong > malformed). DPO's reference is the starting model: its
log-probabilities of every answer are computed once, before training, so the reference is never
held in memory beside the policy (TRL's `precompute_ref_log_probs`). SimPO needs no reference.
With the built-in tasks, held-out task accuracy is measured before and after, as SFT does.

Under `sequence_parallel` (LoongTrain's head x context split, docs/sequence_parallel.md) each rank
holds T / P tokens of every row; the losses add each answer's log-probs over the ranks
(`lmforge.train.seqpar.rowsums`), and the rows are lengthened to a length that splits
(`pair_batch`). The reference is computed the same way (`reference_table`).

    out_dir/metrics.jsonl, checkpoints/, model/ (HF InternLM2 + tokenizer), dpo.json (summary)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from rich.console import Console

from lmforge.align.chat_rows import Encoded, encode_prompt_answer
from lmforge.align.config import TASK_DATA, DPOSection
from lmforge.align.conversations import Pair, Skipped, read_pairs
from lmforge.align.loop import fit, report_skipped, setup
from lmforge.align.losses import PreferenceLoss, reference_logps
from lmforge.align.pair_rows import PairLoader, lm_pair_batch
from lmforge.atomic import write_json
from lmforge.train.batch import Batch
from lmforge.train.config import SequenceParallelSection
from lmforge.train.seqpar import pad_rows


def dpo_pairs(cfg: DPOSection, console: Console) -> tuple[list[Pair], list]:
    """(training pairs, held-out task examples: empty for a JSONL file)."""
    if cfg.data != TASK_DATA:
        skipped = Skipped()
        pairs = read_pairs(cfg.data, skipped=skipped)
        report_skipped(cfg.data, skipped, console)
        return pairs, []
    from lmforge.align.preferences import task_pairs
    from lmforge.align.sft import task_splits

    train, test = task_splits(cfg)
    return task_pairs(train, cfg.seed), test


def pair_batch(pairs: Sequence[tuple[Encoded, Encoded]], pad_id: int, sp: SequenceParallelSection,
               ref_logps: torch.Tensor | None = None) -> Batch:
    """The rows of these pairs (`lm_pair_batch`: right-padded to the longest); under sequence
    parallelism lengthened to the next length that splits over head x context, the new tokens a
    document of their own outside the loss (`seqpar.pad_rows`), which changes no log-prob."""
    batch = lm_pair_batch(pairs, pad_id, ref_logps)
    return batch if sp.size == 1 else pad_rows(batch, sp.head, sp.context)


def reference_table(trainer, encoded: Sequence[tuple[Encoded, Encoded]], pad_id: int, micro_batch: int
                    ) -> torch.Tensor:
    """The reference's log P(answer) of every pair (pairs, 2), by the model `trainer` holds before its
    first step (the starting model), `micro_batch` pairs per forward. Every process computes every
    pair (the loader may give any pair to any data-parallel rank), the same pairs in the same order.

    The forward is the trainer's own: under sequence parallelism each rank runs its shard of the
    rows and the model's `row_sums` all-reduce gives every rank the whole rows' sums, rather than
    one process running the whole rows before sharding. The rows are split because a whole row may
    not fit one device, and so the reference is the very computation of the policy's first step
    (same shards, same precision): its log-ratios start at zero up to rounding."""
    model, sp = trainer.model.eval(), trainer.tc.sequence_parallel
    try:
        with trainer.amp():
            out = [reference_logps(model, trainer.local(pair_batch(encoded[i:i + micro_batch], pad_id, sp)))
                   for i in range(0, len(encoded), micro_batch)]
    finally:
        model.train()
    return torch.cat(out).view(-1, 2)


def dpo(cfg: DPOSection, out_dir: str | Path, *, resume: bool = True, console: Console | None = None,
        device: str = "auto") -> dict:
    """Optimise `cfg.init_from` on the preference pairs; returns the summary (also dpo.json)."""
    from lmforge.align.sft import measure_accuracy, print_accuracy
    from lmforge.model import load_model
    from lmforge.tokenizer import Tokenizer
    from lmforge.train.trainer import Trainer

    out_dir, info, console = setup("dpo", cfg, out_dir, device, console)
    began = time.perf_counter()
    tok = Tokenizer.load(cfg.init_from)
    pairs, held_out = dpo_pairs(cfg, console)
    system = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    encoded = [(encode_prompt_answer(tok, system + p.prompt, p.chosen), encode_prompt_answer(tok, system + p.prompt,
                                                                                                p.rejected))
               for p in pairs]
    kept = [e for e in encoded if max(len(e[0].ids), len(e[1].ids)) <= cfg.seq_len + 1]
    dropped, encoded = len(encoded) - len(kept), kept
    pad = tok.pad_id or 0
    model = load_model(cfg.init_from).float()
    before = measure_accuracy(Path(cfg.init_from), held_out, cfg, str(info.device)) if info.is_main else None
    ref: torch.Tensor | None = None  # DPO: set below, before the loader builds its first batch

    def build(idx: list[int]):
        return pair_batch([encoded[i] for i in idx], pad, cfg.sequence_parallel, None if ref is None else ref[idx])

    loader = PairLoader(len(encoded), build, cfg.global_batch, cfg.micro_batch, info.dp_rank, info.dp_size, cfg.seed)
    trainer = Trainer(model.train(), cfg.train_section(), info, accum=loader.accum)
    if cfg.loss == "dpo":  # the reference: the starting model's log P(answer), once
        ref = reference_table(trainer, encoded, pad, cfg.micro_batch)
    console.print(f"[bold]{cfg.loss}[/bold]: {len(encoded)} pairs ({dropped} longer than {cfg.seq_len + 1} tokens "
                  f"dropped), beta {cfg.beta}, {cfg.steps} steps x {cfg.global_batch} pairs")
    result = fit(trainer, loader, PreferenceLoss(cfg.loss, cfg.beta, cfg.simpo_gamma), out_dir, resume=resume,
                 console=console)
    trainer.close()
    summary = {"pairs": len(encoded), "dropped": dropped, "steps": result.steps, "final": result.last,
               "interrupted": result.interrupted}
    if result.interrupted:
        return summary
    model_dir = trainer.export(out_dir / "model", cfg.init_from)
    if info.is_main:
        after = measure_accuracy(model_dir, held_out, cfg, str(info.device))
        summary.update(model=str(model_dir), seconds=time.perf_counter() - began,
                       accuracy_before=before and before["accuracy"], accuracy_after=after and after["accuracy"],
                       config=dataclasses.asdict(cfg))
        write_json(out_dir / "dpo.json", summary)
        if after:
            print_accuracy(before["accuracy"], after["accuracy"], console)
    return summary
