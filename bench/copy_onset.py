"""When does a small model learn to copy? The induction-circuit onset by embedding scale (issue #19).

Paper: InternLM2 report, arXiv 2403.17297, section 5 (NIAH); induction heads: Olsson et al. 2022;
docs/papers.md §2, §9.

Pass-key retrieval needs the model to copy from far back: an induction circuit (a head that marks
each token's predecessor, and one that finds the earlier occurrence of the current token and copies
what followed it). This trains a fresh model of a preset on the cleanest copy task there is: rows of
random segments, each written twice ("<s> a b c ... a b c ..."), the loss on the second copies only,
and prints the copy accuracy (argmax) on fixed held-out rows every --every steps, for each
embedding initialisation scale in --scales. The onset is abrupt (a phase change, as Olsson et al.
saw), and its step depends on the scale.

--hf also trains transformers' LlamaForCausalLM from the same initial weights (saved in Llama
format) on the same batches with the same optimizer, for the first scale: the two loss columns
agree until rounding separates them, so the onset is not an artefact of lmforge's model code.

    python bench/copy_onset.py --scales 1.0,0.2,0.1,0.05,0.02 --steps 800      # ~25 minutes, 1 thread

--smear-keys trains a smeared-key model (`model.smear_keys`: each key mixes in the one before it,
Olsson et al. 2022) beside each plain one, from the same initial weights and on the same batches:
an induction head then needs no previous-token head, and the onset comes far sooner.

    python bench/copy_onset.py --scales 1.0 --smear-keys --steps 600     # ~10 minutes, 1 thread

--model DIR measures a trained model instead (segments drawn from its whole vocabulary):

    python bench/copy_onset.py --model runs/tiny/pretrain/model
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch
import torch.nn.functional as F

from lmforge.model import InternLM2, preset
from lmforge.model.loss import IGNORE_INDEX


def copy_rows(rng: random.Random, batch: int, seq: int, symbols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (B, seq), targets (B, seq)): segments of 5-20 random ids from [3, 3 + symbols), each
    written twice after a BOS (id 1); only the second copy's tokens are targets."""
    xs, ys = [], []
    for _ in range(batch):
        ids, counted = [], []
        while len(ids) < seq + 1:
            n = rng.randint(5, 20)
            seg = [rng.randrange(3, 3 + symbols) for _ in range(n)]
            ids += [1, *seg, *seg]
            counted += [False] * (n + 1) + [True] * n
        x = torch.tensor(ids[:seq + 1])
        y = x[1:].clone()
        y[~torch.tensor(counted[1:seq + 1])] = IGNORE_INDEX
        xs.append(x[:-1])
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def logits_of(model, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out if isinstance(out, torch.Tensor) else out.logits  # transformers returns an output object


def copy_accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    """Argmax accuracy on the second copies' tokens (the targets of `copy_rows`); leaves the model in
    eval mode."""
    with torch.no_grad():
        pred = logits_of(model.eval(), x).argmax(-1)
    keep = y != IGNORE_INDEX
    return (pred[keep] == y[keep]).float().mean().item()


def train(models: dict, args, rows_seed: int = 0) -> dict[str, list[tuple[int, float, float]]]:
    """Train every model on the same batches; {name: [(step, loss, held-out copy accuracy)]}."""
    rng = random.Random(rows_seed)
    held_x, held_y = copy_rows(random.Random(123), 32, args.seq, args.symbols)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
            for k, m in models.items()}
    curves: dict[str, list] = {k: [] for k in models}
    for step in range(1, args.steps + 1):
        x, y = copy_rows(rng, args.batch, args.seq, args.symbols)
        for k, m in models.items():
            loss = F.cross_entropy(logits_of(m, x).flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opts[k].step()
            opts[k].zero_grad()
            if step % args.every == 0:
                curves[k].append((step, loss.item(), copy_accuracy(m, held_x, held_y)))
                m.train()
        if step % args.every == 0:
            print(f"step {step}: " + "  ".join(f"{k} loss {c[-1][1]:.4f} copy {c[-1][2]:.3f}"
                                                for k, c in curves.items()), flush=True)
    return curves


def measure(args, ap: argparse.ArgumentParser) -> None:
    """--model: the copy accuracy of a trained model on 32 held-out rows of `--seq` tokens."""
    from lmforge.model import load_model

    try:
        model = load_model(args.model).float()
    except (FileNotFoundError, OSError, ValueError) as e:
        ap.error(f"--model {args.model}: {e}")
    vocab = model.cfg.vocab_size
    symbols = args.symbols or vocab - 3
    check_symbols(ap, symbols, vocab, "the model")
    torch.set_num_threads(args.threads)
    x, y = copy_rows(random.Random(123), 32, args.seq, symbols)
    keep = int((y != IGNORE_INDEX).sum())
    print(f"{args.model}: copy accuracy {copy_accuracy(model, x, y):.3f} on {keep} second-copy tokens "
          f"(32 rows of {args.seq}, segments of 5-20 ids from [3, {3 + symbols}))")


def check_symbols(ap: argparse.ArgumentParser, symbols: int, vocab: int, owner: str) -> None:
    """--symbols must leave ids 0-2 (the special tokens) out of the segments' alphabet."""
    if symbols + 3 > vocab:
        ap.error(f"--symbols {symbols}: {owner} has {vocab} tokens (ids 3.. are used); use at most {vocab - 3}")


def positive_floats(text: str) -> list[float]:
    """--scales: comma-separated positive numbers."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated numbers, e.g. 1.0,0.1") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: every scale must be > 0")
    return values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", help="model preset (default: the demo's)")
    ap.add_argument("--scales", type=positive_floats, default=[1.0, 0.1],
                    help="embedding init std values, comma-separated (default 1.0,0.1)")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3, help="AdamW (0.9, 0.95), weight decay 0.1, clip 1.0")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--symbols", type=int, help="the segments' alphabet size (default: 64 when training, the "
                                                "model's whole vocabulary with --model)")
    ap.add_argument("--hf", action="store_true", help="also train transformers' Llama from the same init")
    ap.add_argument("--smear-keys", action="store_true",
                    help="also train a model with smeared keys (model.smear_keys) from the same initial weights")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", help="a trained model's folder (e.g. runs/tiny/pretrain/model): print its copy "
                                    "accuracy on the held-out rows instead of training; --symbols defaults "
                                    "to its whole vocabulary")
    args = ap.parse_args()
    if args.symbols is not None and args.symbols < 1:
        ap.error("--symbols must be >= 1")
    for name in ("steps", "every", "batch", "seq", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if args.model:
        measure(args, ap)
        return
    args.symbols = args.symbols or 64
    if args.steps < args.every:
        ap.error(f"--steps {args.steps} is fewer than --every {args.every}: nothing would be measured")
    try:
        vocab = preset(args.preset).vocab_size
    except (KeyError, ValueError) as e:
        ap.error(str(e.args[0]) if e.args else f"--preset {args.preset!r}: unknown")
    check_symbols(ap, args.symbols, vocab, f"the {args.preset} preset")
    torch.set_num_threads(args.threads)
    onset = {}
    for i, scale in enumerate(args.scales):
        cfg = preset(args.preset, max_seq_len=args.seq, embed_init_std=scale)
        model = InternLM2(cfg)
        model.init_weights(0)
        models = {f"lmforge@{scale:g}": model}
        if args.smear_keys:  # the same initial weights, plus the smear gates (at an even mix)
            smeared = InternLM2(cfg.replace(smear_keys=True))
            smeared.init_weights(0)
            smeared.load_state_dict(model.state_dict(), strict=False)
            models[f"smeared keys@{scale:g}"] = smeared
        if args.hf and i == 0:
            from transformers import LlamaForCausalLM

            from lmforge.model.hf import save_model

            with tempfile.TemporaryDirectory() as d:
                save_model(model, d, fmt="llama")
                models[f"transformers@{scale:g}"] = LlamaForCausalLM.from_pretrained(
                    d, torch_dtype=torch.float32, attn_implementation="eager")
        t0 = time.perf_counter()
        for name, curve in train(models, args).items():
            onset[name] = (next((s for s, _, acc in curve if acc >= 0.5), None), curve[-1][2],
                           time.perf_counter() - t0)
    print(f"\n{args.preset} preset, {args.symbols}-symbol copy task, batch {args.batch} x {args.seq}, lr {args.lr}")
    print("| model @ embedding std | first step with copy accuracy >= 0.5 | accuracy at the end | seconds |")
    print("|---|---:|---:|---:|")
    for name, (step, acc, secs) in onset.items():
        print(f"| {name} | {step if step is not None else f'> {args.steps}'} | {acc:.3f} | {secs:.0f} |")


if __name__ == "__main__":
    main()
