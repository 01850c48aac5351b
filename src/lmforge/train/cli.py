"""`lmforge train RECIPE`: the recipe's [model] and [train] sections -> `lmforge.train.train`.

Run it as is for one process, or under torchrun for FSDP2 on several:
    torchrun --nproc_per_node 8 -m lmforge.cli train recipes/small-gpu.toml
"""

from __future__ import annotations

import argparse

from lmforge.config import load_recipe
from lmforge.recipe import Recipe, model_config
from lmforge.shards import list_shards, open_shard


def run_training(recipe: Recipe, resume: bool = False):
    from lmforge.train.trainer import train

    tc = recipe.train
    if tc.tokenizer:
        from lmforge.tokenizer import Tokenizer

        tok = Tokenizer.load(tc.tokenizer)
        cfg = model_config(recipe.model, vocab_size=tok.vocab_size, bos_token_id=tok.bos_id,
                           eos_token_id=tok.eos_id, pad_token_id=tok.pad_id)
    else:
        # No tokenizer given: the shards say how large the vocabulary is.
        vocab = max(open_shard(h).header.vocab_size for h in list_shards(tc.shards))
        cfg = model_config(recipe.model, vocab_size=vocab)
    return train(cfg, tc, tc.out_dir, tokenizer_dir=tc.tokenizer, resume=resume)


def _cmd(args) -> int:
    run_training(load_recipe(args.recipe, Recipe, args.set), resume=args.resume)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="pre-train on packed token shards (FSDP2 under torchrun; stages; AdaLomo)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="a recipe TOML with [model] and [train] sections")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in train.out_dir (finished stages are skipped)")
    p.set_defaults(fn=_cmd)
