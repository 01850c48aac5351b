"""How fast does a model learn pass-key retrieval? A diagnostic for the long-context stage (issue #19).

Paper: InternLM2 report, arXiv 2403.17297, sections 3.2 and 5 (NIAH); pass keys: Mohtashami &
Jaggi 2023; docs/papers.md §2, §9.

Continues a checkpoint (default: the demo's model after its short stage) on packed pass-key
documents only (`lmforge.eval.passkey`, lengths drawn from --lo..--hi tokens, the stage's RoPE base)
and prints, every --every steps, on fresh documents scored teacher-forced:

    copy     the needle's second copy of the key ("... Remember it. 41190 is the pass key"): five
             tokens after the first, so it needs copying but no long-range search
    answer   the answer after the question at the end: the retrieval itself
    exact    all five digits of the answer right (what NIAH's exact score needs)

at two document lengths. 0.10 per digit is chance (ten digits).

    python bench/passkey_learning.py --steps 1000 --every 100

--checkpoints STAGE_DIR trains nothing: it scores each checkpoint a run's stage kept (set
`train.keep_checkpoints` high enough), to see when in pre-training the copy circuit formed:

    lmforge run recipes/tiny.toml --set train.keep_checkpoints=20
    python bench/passkey_learning.py --checkpoints runs/tiny/pretrain/train/short --lengths 100,250,900
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from pathlib import Path

import torch

from lmforge.eval.passkey import passkey_document
from lmforge.model import load_model
from lmforge.model.loss import IGNORE_INDEX
from lmforge.tokenizer import Tokenizer
from lmforge.train.optim import build_optimizer


def packed_batch(tok, rng, batch: int, seq: int, lo: int, hi: int):
    rows, docs = [], []
    for _ in range(batch):
        row, ids, k = [], [], 0
        while len(row) < seq + 1:
            doc = [tok.bos_id, *tok.encode(passkey_document(tok, rng.randint(lo, hi), rng)), tok.eos_id]
            row += doc
            ids += [k] * len(doc)
            k += 1
        rows.append(row[:seq + 1])
        docs.append(ids[:seq + 1])
    x, d = torch.tensor(rows), torch.tensor(docs)
    y = x[:, 1:].clone()
    y[d[:, 1:] != d[:, :-1]] = IGNORE_INDEX
    return x[:, :-1], y, d[:, :-1]


@torch.no_grad()
def score(model, tok, length: int, n: int, rng) -> dict:
    """Teacher-forced per-digit accuracy of the needle's second key copy and of the answer."""
    model.eval()
    copy = answer = exact = 0.0
    for _ in range(n):
        ids = [tok.bos_id, *tok.encode(passkey_document(tok, length, rng))]
        pred = model(torch.tensor([ids]))[0].argmax(-1).tolist()
        digits = [i for i, t in enumerate(ids) if tok.decode([t]).isdigit()]
        second, last = digits[5:10], digits[10:15]  # key in the needle, its copy, the answer
        copy += sum(pred[i - 1] == ids[i] for i in second) / 5
        hits = [pred[i - 1] == ids[i] for i in last]
        answer += sum(hits) / 5
        exact += all(hits)
    model.train()
    return {"copy": copy / n, "answer": answer / n, "exact": exact / n}


def stage_checkpoints(stage: Path) -> list[Path]:
    return sorted((stage / "checkpoints").glob("step_????????"))


def score_checkpoints(stage: Path, tok, lengths: list[int], n: int = 24) -> None:
    """The copy / answer / exact columns of every checkpoint under `stage`/checkpoints, at its own RoPE base."""
    from lmforge.train.export import load_training_checkpoint_model

    print(f"{'step':>6} " + " ".join(f"{f'{k}@{length}':>11}" for length in lengths
                                     for k in ("copy", "answer", "exact")))
    for path in stage_checkpoints(stage):
        model, _ = load_training_checkpoint_model(path)
        model.cfg = dataclasses.replace(model.cfg, max_seq_len=max(model.cfg.max_seq_len, *lengths))
        rng = random.Random(1)  # the same documents for every checkpoint
        scores = [score(model, tok, length, n, rng) for length in lengths]
        cells = " ".join(f"{s[k]:>11.2f}" for s in scores for k in ("copy", "answer", "exact"))
        print(f"{int(path.name[5:]):>6} {cells}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/tiny/pretrain/train/short/hf")
    p.add_argument("--tokenizer", default="runs/tiny/tokenizer")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--lo", type=int, default=70, help="shortest document, tokens")
    p.add_argument("--hi", type=int, default=250, help="longest document, tokens")
    p.add_argument("--lengths", default="200,900", help="document lengths scored")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "muon"])
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--rope-theta", type=float, default=1e6)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--checkpoints", default="", help="a stage folder of a run: score its checkpoints, train nothing")
    args = p.parse_args()
    try:
        lengths = [int(x) for x in args.lengths.split(",")]
    except ValueError:
        p.error(f"--lengths {args.lengths!r}: expected token counts separated by commas, e.g. 200,900")
    if args.checkpoints and not stage_checkpoints(Path(args.checkpoints)):
        p.error(f"--checkpoints {args.checkpoints}: no step_XXXXXXXX folder under {args.checkpoints}/checkpoints; "
                "give a stage folder of a run, e.g. runs/tiny/pretrain/train/short")
    if not Path(args.tokenizer).exists():
        p.error(f"--tokenizer {args.tokenizer}: not found; give the run's tokenizer folder, e.g. runs/tiny/tokenizer")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = Tokenizer.load(args.tokenizer)
    if args.checkpoints:
        score_checkpoints(Path(args.checkpoints), tok, lengths)
        return
    model = load_model(args.checkpoint).float()
    model.cfg = dataclasses.replace(model.cfg, rope_theta=args.rope_theta,
                                    max_seq_len=max(model.cfg.max_seq_len, *lengths))
    model.train()
    opt = build_optimizer(model, args.optimizer, args.lr)
    rng, eval_rng = random.Random(0), random.Random(1)
    print(f"{'step':>6} {'tokens':>10} " + " ".join(f"{f'{k}@{n}':>11}" for n in lengths
                                                     for k in ("copy", "answer", "exact")) + "   seconds")
    began = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            scores = [score(model, tok, n, 16, eval_rng) for n in lengths]
            print(f"{step:>6} {step * args.batch * args.seq_len:>10,} "
                  + " ".join(f"{s[k]:>11.2f}" for s in scores for k in ("copy", "answer", "exact"))
                  + f"   {time.perf_counter() - began:7.0f}", flush=True)
        if step == args.steps:
            break
        x, y, d = packed_batch(tok, rng, args.batch, args.seq_len, args.lo, args.hi)
        loss, _ = model(x, targets=y, document_ids=d)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


if __name__ == "__main__":
    main()
