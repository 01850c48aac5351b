"""Race lmforge against nanoGPT at equal training wall clock on the same CPU (issue: small models that learn).

nanoGPT runs from its own `train.py` with the CPU settings of its README (4 layers, 4 heads, 128 wide,
context 64, batch 12, no dropout, character level, AdamW 1e-3 with warmup and cosine to 1e-4);
lmforge runs `lmforge run recipes/shakespeare.toml`. Both train on the same text: the 38 Shakespeare
plays and poems of `lmforge.corpora.shakespeare_plays("train")` (modern editions), each side fitting
its tokenizer on that text only (nanoGPT: the characters; lmforge: its byte-level BPE). The four
held-out plays are scored afterwards by `lmforge.eval.bpb` for both: bits per UTF-8 byte, a sliding
window at each model's context, stride half of it. nanoGPT's checkpoint is scored through a small
adapter that calls nanoGPT's own `GPT` class.

Equal wall clock: nanoGPT first runs a short calibration to measure its seconds per iteration and
fixed overhead, and then gets the number of iterations that fills the budget (its cosine ends with
`max_iters`, as its README sets them equal). The machine's speed drifts, so nanoGPT's run misses the
budget somewhat; lmforge then gets exactly the wall time nanoGPT took: its pretrain stage gets what
is left after its data, tokenizer and shards stages as `train.max_seconds`, and its schedule follows
the share of that budget spent. The table reports the wall times actually measured: nanoGPT's whole `train.py` process (model build,
its periodic evaluation and checkpoints included), lmforge's data, tokenizer, shards and pretrain
stages. The held-out plays are nanoGPT's `val.bin` too, for its log only: `always_save_checkpoint`
is on, so no checkpoint is chosen by held-out loss on either side.

    git clone https://github.com/karpathy/nanoGPT /tmp/nanoGPT
    .venv/bin/python bench/race_nanogpt.py --nanogpt /tmp/nanoGPT --minutes 10

Options after `--set` go to the lmforge run (e.g. `--set model.n_layers=6`), so one script also
runs the ablations (`--skip-nanogpt` reuses the nanoGPT result of an earlier race).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle  # nanoGPT's train.py reads its vocabulary size from a meta.pkl; we write it, never read one
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
NANOGPT_README = dict(device="cpu", compile=False, eval_iters=20, log_interval=1, block_size=64, batch_size=12,
                      n_layer=4, n_head=4, n_embd=128, dropout=0.0)  # + config/train_shakespeare_char.py
EVAL_INTERVAL = 250  # config/train_shakespeare_char.py


def texts() -> tuple[str, str]:
    from lmforge.corpora import shakespeare_plays

    return "\n\n".join(shakespeare_plays("train").values()), "\n\n".join(shakespeare_plays("heldout").values())


# ---- nanoGPT ---------------------------------------------------------------------------------------


def prepare_nanogpt(nanogpt: Path, work: Path, train: str, heldout: str) -> Path:
    """A run folder with links to nanoGPT's scripts and its data/lmforge_race/ (train.bin, val.bin,
    meta.pkl) built from the train text's characters, as nanoGPT's shakespeare_char/prepare.py does."""
    run = work / "nanogpt"
    data = run / "data" / "lmforge_race"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("train.py", "model.py", "configurator.py", "config"):
        link = run / name
        if not link.exists():
            link.symlink_to((nanogpt / name).resolve())
    chars = sorted(set(train))
    missing = sorted(set(heldout) - set(chars))
    if missing:
        raise SystemExit(f"held-out characters {missing} never occur in the train plays: nanoGPT could not "
                         "encode them")
    stoi = {c: i for i, c in enumerate(chars)}
    np.array([stoi[c] for c in train], dtype=np.uint16).tofile(data / "train.bin")
    np.array([stoi[c] for c in heldout], dtype=np.uint16).tofile(data / "val.bin")
    with open(data / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
    (data / "chars.json").write_text(json.dumps(chars), encoding="utf-8")
    return run


def run_nanogpt(run: Path, max_iters: int, out: str, eval_interval: int = EVAL_INTERVAL) -> dict:
    """nanoGPT's train.py with the README's CPU settings; wall time and its per-iteration times."""
    args = {**NANOGPT_README, "dataset": "lmforge_race", "out_dir": out, "max_iters": max_iters,
            "lr_decay_iters": max_iters, "always_save_checkpoint": True, "eval_interval": eval_interval}
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *[f"--{k}={v}" for k, v in args.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=run, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"nanoGPT failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    (run / f"{out}.log").write_text(done.stdout, encoding="utf-8")
    iter_ms = [float(m) for m in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", done.stdout, re.M)]
    vals = re.findall(r"^step (\d+): train loss ([\d.]+), val loss ([\d.]+)", done.stdout, re.M)
    return {"wall_s": wall, "iter_ms": iter_ms, "iters": max_iters, "evals": [tuple(map(float, v)) for v in vals]}


def nanogpt_scorer(nanogpt: Path, run: Path, out: str):
    """(logprobs function, tokenizer, context, parameters) of a nanoGPT checkpoint, via nanoGPT's own model."""
    sys.path.insert(0, str(nanogpt.resolve()))
    from model import GPT, GPTConfig  # nanoGPT's model.py

    ckpt = torch.load(run / out / "ckpt.pt", map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    model.eval()
    chars = json.loads((run / "data" / "lmforge_race" / "chars.json").read_text(encoding="utf-8"))

    class Chars:
        vocab_size = len(chars)
        index = {c: i for i, c in enumerate(chars)}

        def encode(self, text):
            return [self.index[c] for c in text]

        def decode(self, ids):
            return "".join(chars[i] for i in ids)

    def logprobs(rows: torch.Tensor) -> torch.Tensor:
        logits, _ = model(rows[:, :-1], rows[:, 1:].contiguous())  # with targets: every position's logits
        return logits.float().log_softmax(-1).gather(-1, rows[:, 1:, None])[..., 0]

    params = sum(p.numel() for p in model.parameters())
    return logprobs, Chars(), ckpt["model_args"]["block_size"], params, ckpt["iter_num"]


def nanogpt_side(args, work: Path, train: str, heldout: str) -> dict:
    from lmforge.eval.bpb import text_bits_per_byte

    run = prepare_nanogpt(Path(args.nanogpt), work, train, heldout)
    budget = args.minutes * 60
    done = run / "out-race.json"  # a finished training run is reused (the scoring can be rerun alone)
    if done.is_file() and (run / "out-race" / "ckpt.pt").is_file() and json.loads(done.read_text())["budget"] == budget:
        race = json.loads(done.read_text())
        print(f"nanoGPT: reusing the finished run in {run / 'out-race'}", flush=True)
    else:
        print(f"nanoGPT: calibrating ({args.calibrate_iters} iterations) ...", flush=True)
        cal = run_nanogpt(run, args.calibrate_iters, "out-calibrate", eval_interval=10 ** 9)
        per_iter = statistics.fmean(cal["iter_ms"][10:]) / 1000
        overhead = max(0.0, cal["wall_s"] - sum(cal["iter_ms"]) / 1000)
        # Each evaluation runs 2 x eval_iters forward passes (~1/3 of a training step each).
        eval_share = 2 * NANOGPT_README["eval_iters"] / 3 / EVAL_INTERVAL
        iters = int((budget - overhead) / (per_iter * (1 + eval_share)))
        iters = max(EVAL_INTERVAL, iters // EVAL_INTERVAL * EVAL_INTERVAL)  # checkpoints come with evaluations
        print(f"nanoGPT: {per_iter * 1000:.1f} ms/iteration, {overhead:.1f}s overhead -> {iters} iterations",
              flush=True)
        race = {**run_nanogpt(run, iters, "out-race"), "budget": budget}
        done.write_text(json.dumps(race), encoding="utf-8")
    logprobs, tok, context, params, iter_num = nanogpt_scorer(Path(args.nanogpt), run, "out-race")
    print("nanoGPT: scoring the held-out plays ...", flush=True)
    bpb = text_bits_per_byte(logprobs, tok, heldout, context, name="held-out plays", batch_size=64)
    return {"side": "nanoGPT", "params": params, "steps": iter_num, "tokens_seen": iter_num * 12 * 64,
            "bytes_per_token": bpb.bytes / bpb.tokens, "wall_s": race["wall_s"], "bpb": bpb.bpb,
            "bpb_detail": bpb.as_dict(), "settings": NANOGPT_README}


# ---- lmforge ---------------------------------------------------------------------------------------


def run_lmforge(recipe: str, out: Path, sets: list[str]) -> dict:
    cmd = [sys.executable, "-m", "lmforge.cli", "run", recipe, "--set", f"run.out_dir={out}", *sum((["--set", s]
                                                                                                   for s in sets), [])]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    (out.parent / f"{out.name}.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    if done.returncode:
        raise SystemExit(f"lmforge failed ({' '.join(cmd)}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


TRAIN_STAGES = ("data", "tokenizer", "shards", "pretrain")


def lmforge_side(args, work: Path, budget: float) -> dict:
    """`lmforge run` with the pretrain stage given the budget left after the data, tokenizer and shards
    stages (`train.max_seconds`: the schedule follows the share of the budget spent, so the side needs
    no calibration); the wall time reported is what the four stages actually took."""
    sets = [*args.set, "eval.tasks=[]", "eval.niah_kinds=[]", 'eval.ppl_langs=["en"]', "eval.bpb_max_chars=10000000",
            f"train.max_seconds={budget - args.prep_seconds}", "train.steps=1000000000"]
    print(f"lmforge: training for {budget - args.prep_seconds:.0f}s ...", flush=True)
    race = run_lmforge(args.recipe, work / "lmforge-race", sets)
    bpb = race["eval"]["bpb"]["en"]
    pre = race["pretrain"]
    stage = next(iter(pre["stages"].values()))
    return {"side": "lmforge", "params": pre["params"], "steps": stage["steps"], "tokens_seen": stage["tokens"],
            "bytes_per_token": bpb["bytes"] / bpb["tokens"],
            "wall_s": sum(race["timings"][s]["seconds"] for s in TRAIN_STAGES), "bpb": bpb["bpb"],
            "bpb_detail": bpb, "settings": args.set, "samples": race.get("sample", {}).get("samples")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nanogpt", help="a checkout of github.com/karpathy/nanoGPT")
    p.add_argument("--minutes", type=float, default=10.0, help="training wall clock per side (default 10)")
    p.add_argument("--recipe", default=str(ROOT / "recipes" / "shakespeare.toml"))
    p.add_argument("--set", action="append", default=[], help="override a recipe key for the lmforge side")
    p.add_argument("--work", default="runs/race", help="working folder (default runs/race)")
    p.add_argument("--calibrate-iters", type=int, default=200)
    p.add_argument("--prep-seconds", type=float, default=6.0,
                   help="lmforge: seconds of the budget left for its data, tokenizer and shards stages (default 6)")
    p.add_argument("--skip-nanogpt", default=None, help="reuse the nanoGPT row of this earlier race.json")
    p.add_argument("--skip-lmforge", action="store_true", help="run the nanoGPT side only")
    args = p.parse_args()
    if not args.nanogpt and not args.skip_nanogpt:
        p.error("--nanogpt DIR (a nanoGPT checkout) or --skip-nanogpt race.json is required")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    train, heldout = texts()
    print(f"train plays {len(train):,} chars, held-out plays {len(heldout):,} chars; "
          f"{torch.get_num_threads()} threads", flush=True)
    rows = []
    if args.skip_nanogpt:
        rows.append(next(r for r in json.loads(Path(args.skip_nanogpt).read_text())["rows"] if r["side"] == "nanoGPT"))
    else:
        rows.append(nanogpt_side(args, work, train, heldout))
    if not args.skip_lmforge:
        # Equal wall clock: lmforge gets what nanoGPT actually took (its calibration misses by the
        # machine's drift), or the budget when nanoGPT's row comes from an earlier race.
        budget = rows[0]["wall_s"] if not args.skip_nanogpt else args.minutes * 60
        rows.append(lmforge_side(args, work, budget))
    result = {"minutes": args.minutes, "threads": torch.get_num_threads(), "rows": rows,
              "heldout_bytes": len(heldout.encode("utf-8"))}
    (work / "race.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    base = rows[0]["bpb"]
    print(f"\n| side | params | steps | tokens seen | bytes/token | train wall (s) | held-out bpb | vs nanoGPT |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['side']} | {r['params'] / 1e6:.2f}M | {r['steps']:,} | {r['tokens_seen']:,} | "
              f"{r['bytes_per_token']:.2f} | {r['wall_s']:.0f} | {r['bpb']:.4f} | {r['bpb'] / base:.3f} |")
    if len(rows) > 1 and rows[1].get("samples"):
        print("\nlmforge samples:")
        for s in rows[1]["samples"]:
            print(f"  {s.get('prompt', '')!r} -> {s.get('text', s)!r}"[:400])


if __name__ == "__main__":
    main()
