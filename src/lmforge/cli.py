"""The `lmforge` command: a thin layer that parses arguments and calls one function per subcommand.

Every subcommand is a plain function you can also call from Python (see each `_cmd_*`'s callee);
`run_command` calls it and turns the errors a user can act on into one line and an exit status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Stages whose issues have not landed yet: the command exists so `lmforge --help` shows the whole
# life cycle, and says plainly that it is not built rather than pretending.
PLANNED: dict[str, tuple[str, int | None]] = {}  # commands that exist only to say they are not built yet


# `lmforge train --help`: how to run it on one process and on several.
TRAIN_DESCRIPTION = """`lmforge train RECIPE`: the recipe's [model] and [train] sections -> `lmforge.train.train`.

Run it as is for one process, or under torchrun for FSDP2 on several:
    torchrun --nproc_per_node 8 -m lmforge.cli train recipes/small-gpu.toml
The device is the recipe's run.device ("auto": CUDA when available; "cpu"; "cuda"). The recipe is
checked before the model is built: ranges, the device, and that train.global_batch divides into
train.micro_batch x the number of processes.
"""


def _cmd_run(args) -> int:
    from lmforge.config import load_recipe
    from lmforge.recipe import Recipe
    from lmforge.run import run

    run(load_recipe(args.recipe, Recipe, args.set), Path(args.recipe).parent, getattr(args, "from"))
    return 0


def _cmd_train(args) -> int:
    from lmforge.config import load_recipe
    from lmforge.lifecycle.pretrain import train_from_recipe
    from lmforge.recipe import Recipe

    train_from_recipe(load_recipe(args.recipe, Recipe, args.set), resume=args.resume)
    return 0


def _cmd_tokenizer_train(args) -> int:
    from rich.console import Console

    from lmforge.lifecycle.corpus import train_tokenizer
    from lmforge.recipe import TokenizerSection

    section = TokenizerSection(vocab_size=args.vocab_size, corpora=args.corpora, files=args.files,
                               max_chars=args.max_chars, min_frequency=args.min_frequency, curated=False)
    train_tokenizer(section, [], {}, Path(args.out), Console())
    return 0


def _cmd_tokenizer_encode(args) -> int:
    from lmforge.tokenizer import Tokenizer

    tok = Tokenizer.load(args.tokenizer)
    ids = tok.encode(args.text)
    print(ids)
    print(" | ".join(tok.decode([i]) for i in ids))
    return 0


def _cmd_convert(args) -> int:
    import torch

    from lmforge.model.convert import convert
    from lmforge.train.export import export_training_checkpoint, is_training_checkpoint

    dtype = getattr(torch, args.dtype) if args.dtype else None
    if is_training_checkpoint(args.src):  # a DCP checkpoint of `lmforge train`, from any number of processes
        out = export_training_checkpoint(args.src, args.dst, fmt=args.to, dtype=dtype)
    else:
        out = convert(args.src, args.dst, to=args.to, dtype=dtype)
    print(f"wrote {args.to} checkpoint to {out}")
    return 0


def _sampling(args, tok):
    from lmforge.generate import SamplingParams
    from lmforge.inference import with_stop_ids

    return with_stop_ids(SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                        top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                                        stop_strings=tuple(args.stop)), tok)


def _cmd_generate(args) -> int:
    from lmforge.generate import stream
    from lmforge.inference import load_for_inference

    model, tok = load_for_inference(args.checkpoint)
    prompts = [tok.encode(p, add_bos=True) for p in args.prompt]
    texts = [""] * len(prompts)
    for ev in stream(model, prompts, _sampling(args, tok), tok):
        texts[ev.index] += ev.text
        if len(prompts) == 1:
            print(ev.text, end="", flush=True)
    if len(prompts) == 1:
        print()
    else:
        for p, t in zip(args.prompt, texts):
            print(f"--- {p}\n{p}{t}")
    return 0


def _cmd_chat(args) -> int:
    from lmforge.generate import Engine
    from lmforge.inference import load_for_inference

    model, tok = load_for_inference(args.checkpoint)
    params = _sampling(args, tok)
    # One engine for the session: each turn's prompt starts with the whole conversation so far,
    # whose blocks the prefix cache still holds, so only the new turn is computed.
    engine = Engine(model, tok, kv_blocks=-(-4 * model.cfg.max_seq_len // 16), block_size=16, max_batch=1)
    messages = [{"role": "system", "content": args.system}] if args.system else []
    turns = list(args.message) if args.message else None
    while True:
        if turns is not None:
            if not turns:
                return 0
            user = turns.pop(0)
        else:
            try:
                user = input("you> ")
            except EOFError:
                print()
                return 0
        messages.append({"role": "user", "content": user})
        prompt = tok.encode_chat(messages, add_generation_prompt=True)
        reply = ""
        print("assistant> ", end="", flush=True)
        engine.add(prompt, params)
        for ev in engine.run():
            reply += ev.text
            print(ev.text, end="", flush=True)
        print()
        messages.append({"role": "assistant", "content": reply})


def _cmd_presets(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from lmforge.model import PRESETS, num_params

    table = Table(title="model presets")
    for col in ("name", "params", "dim", "layers", "heads q/kv", "ffn", "vocab", "rope theta", "window"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for name, c in PRESETS.items():
        table.add_row(name, f"{num_params(c) / 1e9:.3f}B" if num_params(c) > 1e8 else f"{num_params(c) / 1e6:.2f}M",
                      str(c.dim), str(c.n_layers), f"{c.n_heads}/{c.n_kv_heads}", str(c.ffn_dim),
                      f"{c.vocab_size:,}", f"{c.rope_theta:,.0f}", f"{c.max_seq_len:,}")
    Console().print(table)
    return 0


def _cmd_seqpar_cost(args) -> int:
    from lmforge.model.config import preset
    from lmforge.train.seqpar.cost import cost_table, split_costs

    costs = split_costs(preset(args.preset), args.seq_len, args.sp, micro_batch=args.micro_batch,
                        double_ring_window=args.window)
    print(f"{args.preset}: {args.micro_batch} x {args.seq_len:,} tokens over {args.sp} sequence-parallel ranks, "
          "per device and training step (bf16, no recomputation)")
    print(cost_table(costs))
    return 0


def _cmd_planned(args) -> int:
    what, issue = PLANNED[args.command]
    where = f" (issue #{issue})" if issue else ""
    print(f"lmforge {args.command}: {what} -- not built yet{where}. "
          "Run `lmforge --help` for the commands that work today.", file=sys.stderr)
    return 2


def _add_sampling_flags(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)
    p.add_argument("--temperature", type=float, default=0.7, help="0 = greedy (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=50, help="0 disables (default: %(default)s)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling; 1 disables (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed, for reproducible output")
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (the usage block is one `--help` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lmforge",
        description="lmforge: the InternLM2 life cycle -- data, model, tokenizer, pre-training, evaluation, "
                    "serving, SFT, reward models, POLAR, DPO and online RL (GRPO / RLOO). "
                    "`lmforge run recipes/tiny.toml` runs everything built so far; "
                    "`lmforge run recipes/shakespeare.toml` trains a model that writes Shakespeare in ten minutes.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from lmforge.lifecycle.stage import RUN_STAGES

    p = sub.add_parser("run", help="run a recipe's stages in order into its run directory",
                       description="Run the life cycle: " + " -> ".join(RUN_STAGES) + ". Each stage writes its own "
                       "folder under run.out_dir; a rerun skips the stages that are done with the same settings "
                       "and inputs, redoes those that changed, and resumes an interrupted pre-training from its "
                       "last checkpoint. The report is report.html / report.md in the run folder.")
    p.add_argument("recipe", help="a recipe TOML file, e.g. recipes/tiny.toml")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value, e.g. --set model.dim=256 --set run.seed=1 (repeatable)")
    p.add_argument("--from", choices=RUN_STAGES, metavar="STAGE",
                   help="redo this stage and every later one, even if done: " + ", ".join(RUN_STAGES))
    p.set_defaults(fn=_cmd_run)

    p = sub.add_parser("tokenizer", help="train or inspect a byte-level BPE tokenizer")
    tsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    t = tsub.add_parser("train", help="train a BPE on the embedded corpora and/or text files")
    t.add_argument("--out", required=True, help="directory for tokenizer.json + tokenizer_config.json")
    t.add_argument("--vocab-size", type=int, default=8192)
    t.add_argument("--corpora", nargs="*", default=["english", "chinese"],
                   help="embedded corpora: english, chinese, pydoc (default: %(default)s)")
    t.add_argument("--files", nargs="*", default=[], help="extra UTF-8 text files")
    t.add_argument("--max-chars", type=int, default=2_000_000, help="characters taken per corpus")
    t.add_argument("--min-frequency", type=int, default=2)
    t.set_defaults(fn=_cmd_tokenizer_train)
    t = tsub.add_parser("encode", help="show how a tokenizer splits a text")
    t.add_argument("tokenizer", help="a tokenizer or checkpoint directory, tokenizer.json or tokenizer.model")
    t.add_argument("text")
    t.set_defaults(fn=_cmd_tokenizer_encode)

    p = sub.add_parser("convert", help="convert a checkpoint to the InternLM2 or Llama Hugging Face format")
    p.add_argument("src", help="an InternLM2 or Llama checkpoint directory (lmforge's or a published one), "
                               "or a training checkpoint (train_dir/<stage>/checkpoints/step_N)")
    p.add_argument("dst", help="output directory")
    p.add_argument("--to", required=True, choices=["internlm2", "llama"])
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: as stored")
    p.set_defaults(fn=_cmd_convert)

    p = sub.add_parser("generate", help="complete prompts with a checkpoint (streams a single prompt)")
    p.add_argument("checkpoint")
    p.add_argument("prompt", nargs="+")
    _add_sampling_flags(p, 64)
    p.set_defaults(fn=_cmd_generate)

    p = sub.add_parser("chat", help="chat with a checkpoint in the InternLM2 chat format")
    p.add_argument("checkpoint")
    p.add_argument("--system", default=None, help="system prompt")
    p.add_argument("--message", action="append", default=None,
                   help="a user turn; repeat for several turns (omit for an interactive session)")
    _add_sampling_flags(p, 256)
    p.set_defaults(fn=_cmd_chat)

    p = sub.add_parser("presets", help="list the model presets and their parameter counts")
    p.set_defaults(fn=_cmd_presets)
    p = sub.add_parser("seqpar-cost", help="activation memory and traffic per device of each head x context split "
                       "(LoongTrain 2D sequence parallelism)")
    p.add_argument("--preset", default="internlm2-7b", help="model preset (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=131072, help="tokens per row (default: %(default)s)")
    p.add_argument("--sp", type=int, default=8, help="sequence-parallel ranks, head x context (default: %(default)s)")
    p.add_argument("--micro-batch", type=int, default=1, help="rows per step (default: %(default)s)")
    p.add_argument("--window", type=int, default=None, help="double-ring window (default: one plain ring)")
    p.set_defaults(fn=_cmd_seqpar_cost)

    from lmforge.lifecycle.align_cli import register as register_align
    from lmforge.data.cli import register as register_data
    from lmforge.eval.cli import register as register_eval
    from lmforge.serve.cli import register as register_serve

    register_data(sub)
    p = sub.add_parser("train", help="pre-train on packed token shards (FSDP2 under torchrun; stages; AdaLomo)",
                       description=TRAIN_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recipe", help="a recipe TOML with [model] and [train] sections")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in train.out_dir (finished stages are skipped)")
    p.set_defaults(fn=_cmd_train)
    register_eval(sub)
    register_serve(sub)
    register_align(sub)
    for name, (what, _) in PLANNED.items():
        sub.add_parser(name, help=f"{what} (not built yet)").set_defaults(fn=_cmd_planned)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Call the parsed subcommand's `fn(args)`; an error a user can act on (a bad recipe or
    checkpoint, a missing file: RecipeError, CheckpointError and the other ValueErrors, a data task
    that failed, whose traceback is kept in the run folder) becomes one line on stderr and exit
    status 1, an interrupted run that the same command resumes 130."""
    from lmforge.data.stage import TaskError
    from lmforge.lifecycle.stage import RunStageInterrupted

    try:
        return args.fn(args)
    except RunStageInterrupted as e:
        print(f"lmforge {args.command}: {e}", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, TaskError) as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else e  # str(KeyError) adds quotes
        print(f"lmforge {args.command}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
