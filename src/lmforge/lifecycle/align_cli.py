"""`lmforge sft`, `rm`, `dpo`, `polar` and `rl`: a thin layer over lmforge.align.sft / rm / dpo / polar / rl.

Each reads its recipe section ([sft], [rm], [dpo], [polar], [rl]); the model to start from and the output folder
default to the run folder of the same recipe, so after `lmforge run recipes/tiny.toml`:

    lmforge sft recipes/tiny.toml                 runs/tiny/pretrain/model -> runs/tiny/sft/model
    lmforge rm  recipes/tiny.toml                 runs/tiny/sft/model      -> runs/tiny/rm/member-k/model
    lmforge dpo recipes/tiny.toml --set dpo.loss=simpo   runs/tiny/sft/model -> runs/tiny/dpo/model
    lmforge polar recipes/tiny.toml               pool: pretrain/model, sft checkpoints -> runs/tiny/polar/finetune/model
    lmforge rl    recipes/tiny.toml               runs/tiny/sft/model      -> runs/tiny/rl/model
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

# (section, the run folder's model it starts from by default, what it does)
COMMANDS = {
    "sft": ("pretrain/model", "supervised fine-tuning on conversations (loss on assistant tokens; full or LoRA)"),
    "rm": ("sft/model", "reward models: Bradley-Terry or COOL's conditional RM, K-member ensembles and a soup"),
    "dpo": ("sft/model", "direct preference optimisation (DPO, or reference-free SimPO) on preference pairs"),
    "polar": ("sft/model", "POLAR reward pre-training on a pool of policies, then fine-tuning on ranked triples"),
    "rl": ("sft/model", "online RL on the checkable tasks (PPO as COOL RLHF does it, GRPO, RLOO or rejection "
                        "sampling), rollouts from the inference engine"),
}

DATA_HELP = """Data (`data` in the section): "tasks" (default) draws the built-in checkable tasks
(lmforge.align.tasks: add, sort, reverse, copy, count, json, zh, first_word), whose held-out
examples give a real accuracy; or a JSONL file: conversations for sft ({"messages": [...]} OpenAI
shape or {"conversations": [...]} ShareGPT shape), preference pairs for rm / dpo ({"prompt",
"chosen", "rejected", "domain"}). Bad records are counted and skipped, and the first few are
printed with file:line."""


def _cmd(args) -> int:
    from rich.console import Console

    from lmforge.config import load_recipe
    from lmforge.lifecycle.check import check_align, check_device, world_size
    from lmforge.recipe import Recipe

    recipe = load_recipe(args.recipe, Recipe, args.set)
    section = getattr(recipe, args.command)
    default_from, _ = COMMANDS[args.command]
    run_dir = Path(recipe.run.out_dir)
    init_from = args.init_from or section.init_from or str(run_dir / default_from)
    out = args.out or section.out_dir or str(run_dir / args.command)
    if not (Path(init_from) / "config.json").is_file():
        raise ValueError(f"{init_from}: no model there (config.json); set --init-from or {args.command}.init_from, "
                         f"or run `lmforge run {args.recipe}` first")
    world = world_size()
    check_device(recipe.run.device, world)
    check_align(recipe, world, (args.command,))
    section = dataclasses.replace(section, init_from=init_from, out_dir=out)
    if args.command == "polar" and not section.policies:
        from lmforge.lifecycle.align import default_policies

        section = dataclasses.replace(section, policies=default_policies(run_dir / "pretrain" / "model", run_dir / "sft"))
    console = Console()
    if args.command == "sft":
        from lmforge.align.sft import sft as fn
    elif args.command == "rm":
        from lmforge.align.rm import rm as fn
    elif args.command == "polar":
        from lmforge.align.polar import polar as fn
    elif args.command == "rl":
        from lmforge.align.rl import rl as fn
    else:
        from lmforge.align.dpo import dpo as fn
    summary = fn(section, out, resume=not args.restart, console=console, device=recipe.run.device)
    if summary.get("interrupted"):
        return 130
    console.print(f"wrote {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    for name, (default_from, what) in COMMANDS.items():
        p = sub.add_parser(name, help=what, description=f"`lmforge {name} RECIPE`: {what}. Reads the recipe's "
                           f"[{name}] section; starts from {name}.init_from (default: RUN_DIR/{default_from}) and "
                           f"writes {name}.out_dir (default: RUN_DIR/{name}). A rerun resumes from the last "
                           "checkpoint.\n\n" + DATA_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("recipe", help="a recipe TOML with a [" + name + "] section, e.g. recipes/tiny.toml")
        p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help=f"override a recipe value, e.g. --set {name}.steps=100 (repeatable)")
        p.add_argument("--init-from", default="", help="the HF model directory to start from")
        p.add_argument("--out", default="", help="the output folder")
        p.add_argument("--restart", action="store_true", help="start over instead of resuming from a checkpoint")
        p.set_defaults(fn=_cmd)
