"""`lmforge eval ...`: thin argparse wiring, one plain function per action (litgpt's shape).

    lmforge eval run CHECKPOINT --tasks mmlu,gsm8k --limit 20    -> harness.run_eval
    lmforge eval niah CHECKPOINT --haystack en,zh,passkey         -> niah.run_niah_checkpoint
    lmforge eval niah CHECKPOINT --variant multi_hop --hops 2,3   -> (multi-needle / multi-hop NIAH)
    lmforge eval long FILE.jsonl CHECKPOINT --metric qa_f1        -> longtask.run_long_checkpoint
    lmforge eval vl CHECKPOINT [--demo N | --tasks FILE.jsonl]    -> vl_eval.run_vl_checkpoint
    lmforge eval ppl CHECKPOINT --lang en,zh                      -> perplexity.run_perplexity
    lmforge eval bpb CHECKPOINT --text heldout.txt                -> bpb.run_bpb
    lmforge eval compare runs/a/eval/model runs/b/eval/model      -> report.compare
    lmforge eval scaling sweep.json --x flops                     -> scaling.run_scaling
    lmforge eval tasks                                            -> list the built-in tasks

`register(subparsers)` adds the `eval` command to lmforge's top-level parser; each action sets
`fn(args) -> int`, as every other lmforge subcommand does, and `lmforge.cli.main` reports their
errors. `python -m lmforge.eval.cli eval ...` is the same as `lmforge eval ...`.
"""

from __future__ import annotations

import argparse

from lmforge.config import positive_int
from lmforge.eval import longtask, niah, vl_eval
from lmforge.eval.longmetrics import METRICS


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _cmd_run(args) -> int:
    from lmforge.eval.harness import run_eval

    run_eval(args.checkpoint, _csv(args.tasks), limit=args.limit, out=args.out, cache_dir=args.cache,
             tokenizer=args.tokenizer, device=args.device, max_length=args.max_length, batch_size=args.batch_size,
             seed=args.seed, show_progress=not args.no_progress, samples=args.samples, temperature=args.temperature,
             pass_k=args.pass_k, max_new_tokens=args.max_new_tokens)
    return 0


def _cmd_niah(args) -> int:
    from lmforge.eval.niah import run_niah_checkpoint

    run_niah_checkpoint(args.checkpoint, kinds=_csv(args.haystack), lengths=args.lengths, depths=args.depths,
                        repeats=args.repeats, out=args.out, tokenizer=args.tokenizer, device=args.device,
                        max_new_tokens=args.max_new_tokens, seed=args.seed, variant=args.variant,
                        needles=args.needles, hops=args.hops)
    return 0


def _cmd_long(args) -> int:
    from lmforge.eval.longtask import run_long_checkpoint

    template = args.template.replace("\\n", "\n") if args.template else None  # a shell's literal \n
    run_long_checkpoint(args.file, args.checkpoint, metric=args.metric, template=template,
                        max_length=args.max_length, max_new_tokens=args.max_new_tokens, buckets=args.buckets,
                        limit=args.limit, out=args.out, tokenizer=args.tokenizer, device=args.device)
    return 0


def _cmd_vl(args) -> int:
    from lmforge.eval.vl_eval import run_vl_checkpoint

    run_vl_checkpoint(args.checkpoint, demo=args.demo, tasks=args.tasks, seed=args.seed, limit=args.limit,
                      max_new_tokens=args.max_new_tokens, max_tiles=args.max_tiles, batch_size=args.batch_size,
                      out=args.out, tokenizer=args.tokenizer, device=args.device)
    return 0


def _cmd_ppl(args) -> int:
    from lmforge.eval.perplexity import run_perplexity

    run_perplexity(args.checkpoint, langs=_csv(args.lang), files=args.file, window=args.window,
                   max_windows=args.max_windows, tokenizer=args.tokenizer, device=args.device, out=args.out)
    return 0


def _cmd_bpb(args) -> int:
    from lmforge.eval.bpb import run_bpb

    if args.out is not None:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    run_bpb(args.checkpoint, args.text, context=args.context, stride=args.stride, tokenizer=args.tokenizer,
            device=args.device, max_chars=args.max_chars, out=args.out, batch_size=args.batch_size)
    return 0


def _cmd_compare(args) -> int:
    from lmforge.eval.report import compare

    text = compare(args.results, out=args.out, groups=args.groups, print_table=args.out is not None)
    if args.out is None:
        print(text)
    return 0


def _cmd_scaling(args) -> int:
    from lmforge.eval.scaling import run_scaling

    run_scaling(args.sweep, x_key=args.x, out=args.out)
    return 0


def _cmd_tasks(args) -> int:
    from lmforge.eval import tasks

    print(tasks.__doc__.split("\n\n", 1)[1].rstrip())
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="an lmforge or Hugging Face (InternLM2 / Llama) checkpoint directory")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the checkpoint's own)")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")


def register(subparsers) -> argparse.ArgumentParser:
    """Add `eval` and its actions to lmforge's top-level subparsers."""
    p = subparsers.add_parser("eval", help="OpenCompass-style benchmarks, Needle-in-a-Haystack, perplexity, reports")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    r = sub.add_parser("run", help="evaluate a checkpoint on benchmark tasks (results.json, results.md)")
    _common(r)
    r.add_argument("--tasks", default="mmlu,arc_easy,arc_challenge,hellaswag,gsm8k,humaneval,mbpp",
                   help="comma-separated: built-in names (`lmforge eval tasks`), ceval:DIR, cmmlu:DIR, "
                        "mmlu:SUBJECT+SUBJECT or task .toml files (default: %(default)s)")
    r.add_argument("--limit", type=positive_int, default=None, help="first N items of each task (per subject for MMLU)")
    r.add_argument("--out", default=None, help="output folder (default: <checkpoint>/../eval/<name>)")
    r.add_argument("--cache", default=None, help="results cache folder (default: <out>/cache); rerun to resume")
    r.add_argument("--max-length", type=positive_int, default=None,
                   help="longest input in tokens (default: the model's window)")
    r.add_argument("--batch-size", type=positive_int, default=16, help="prompts per generation batch")
    r.add_argument("--seed", type=int, default=1234)
    r.add_argument("--samples", type=positive_int, default=None, help="code tasks: completions per problem (default 1)")
    r.add_argument("--temperature", type=float, default=None,
                   help="code tasks: sampling temperature for --samples > 1 (default 0: greedy)")
    r.add_argument("--pass-k", type=_ints, default=None, help="code tasks: k of pass@k, e.g. 1,10 (default 1)")
    r.add_argument("--max-new-tokens", type=positive_int, default=None,
                   help="cap on generated tokens for generation and code tasks (default: each task's own)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(fn=_cmd_run)

    n = sub.add_parser("niah", help="Needle-in-a-Haystack grid and heatmap (NeedleBench style)")
    _common(n)
    n.add_argument("--haystack", default=",".join(niah.KINDS), help="en, zh, passkey (default: %(default)s)")
    n.add_argument("--lengths", type=_ints, default=None, help="context lengths, e.g. 64,128,256,512 "
                                                               "(default: 1/4, 1/2, 1, 2 x the window)")
    n.add_argument("--depths", type=positive_int, default=niah.DEPTHS,
                   help="number of depths from 0 to 100%% (default: %(default)s)")
    n.add_argument("--repeats", type=positive_int, default=niah.REPEATS, help="needles per cell (default: %(default)s)")
    n.add_argument("--variant", default="single", choices=("single",) + niah.VARIANTS,
                   help="single needle, NeedleBench's multi-needle retrieval or multi-hop reasoning "
                        "(default: %(default)s)")
    n.add_argument("--needles", type=positive_int, default=niah.NEEDLE_COUNT,
                   help="multi_needle: facts hidden and asked for at once (default: %(default)s)")
    n.add_argument("--hops", type=_ints, default=list(niah.HOPS),
                   help="multi_hop: chain lengths, one heatmap row each (default: 2,3,4)")
    n.add_argument("--max-new-tokens", type=positive_int, default=niah.MAX_NEW_TOKENS,
                   help="per answer asked for (default: %(default)s)")
    n.add_argument("--seed", type=int, default=niah.SEED)
    n.add_argument("--out", default=None, help="output folder (default: <checkpoint>/../eval/<name>)")
    n.set_defaults(fn=_cmd_niah)

    g = sub.add_parser("long", help="LongBench-style long-context QA from a JSONL task file, by length bucket",
                       description="Each JSONL record has context, input (the question) and answers (a list); "
                                   "optional id, length, all_classes. Prompts longer than --max-length lose "
                                   "their middle (LongBench's truncation).")
    g.add_argument("file", help="the task file (JSON lines)")
    _common(g)
    g.add_argument("--metric", default="qa_f1", choices=sorted(METRICS),
                   help="scoring of a completion against the answers (default: %(default)s)")
    g.add_argument("--template", default=None,
                   help="prompt with {context} and {input}; \\n is a newline "
                        "(default: a plain read-then-answer prompt)")
    g.add_argument("--max-length", type=positive_int, default=None,
                   help="longest prompt in tokens, new tokens included (default: the model's window)")
    g.add_argument("--max-new-tokens", type=positive_int, default=longtask.MAX_NEW_TOKENS)
    g.add_argument("--buckets", type=_ints, default=None,
                   help="length bucket edges in tokens (default: 4000,8000 -> 0-4k, 4k-8k, 8k+)")
    g.add_argument("--limit", type=positive_int, default=None, help="first N records")
    g.add_argument("--out", default=None, help="output folder (default: <checkpoint>/../eval/<name>)")
    g.set_defaults(fn=_cmd_long)

    v = sub.add_parser("vl", help="image QA: the demo's held-out generated images or an image task file",
                       description="Greedy answers of a vision-language checkpoint (InternVL layout) with V2PE "
                                   "positions. --demo N: accuracy on N held-out generated images (by kind and "
                                   "language); --tasks FILE: a JSONL of image questions, multiple choice (options "
                                   "+ answer letter) or free-form (answer / answers, VQA accuracy).")
    v.add_argument("checkpoint", help="a vision-language checkpoint directory (Hugging Face InternVL layout, "
                                      "as save_vl_model writes)")
    v.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the checkpoint's own)")
    v.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda when available)")
    which = v.add_mutually_exclusive_group()
    which.add_argument("--demo", type=positive_int, default=None,
                       help=f"held-out generated images to ask about (the default, {vl_eval.DEMO_N})")
    which.add_argument("--tasks", default=None, metavar="FILE", help="an image task file (JSON lines)")
    v.add_argument("--seed", type=int, default=vl_eval.DEMO_SEED, help="demo: the split's seed (default: %(default)s)")
    v.add_argument("--limit", type=positive_int, default=None, help="first N questions")
    v.add_argument("--max-new-tokens", type=positive_int, default=vl_eval.MAX_NEW_TOKENS)
    v.add_argument("--max-tiles", type=positive_int, default=vl_eval.MAX_TILES,
                   help="dynamic tiling's tile budget per image, thumbnail aside (default: %(default)s)")
    v.add_argument("--batch-size", type=positive_int, default=8, help="prompts of equal length per forward")
    v.add_argument("--out", default=None, help="output folder (default: <checkpoint>/../eval/<name>)")
    v.set_defaults(fn=_cmd_vl)

    q = sub.add_parser("ppl", help="held-out perplexity per language and by position")
    _common(q)
    q.add_argument("--lang", default="en,zh", help="embedded held-out text: en, zh (default: %(default)s)")
    q.add_argument("--file", action="append", default=[], help="also a UTF-8 text file (repeatable)")
    q.add_argument("--window", type=positive_int, default=None, help="tokens per window (default: the model's window)")
    q.add_argument("--max-windows", type=positive_int, default=16)
    q.add_argument("--out", default=None, help="write the numbers to this JSON file")
    q.set_defaults(fn=_cmd_ppl)

    b = sub.add_parser("bpb", help="bits per UTF-8 byte of text files (compares models with different tokenizers)",
                       description="Bits per UTF-8 byte: the text is tokenized once (a tokenizer that does not "
                                   "give it back exactly is refused), scored with a sliding window at the model's "
                                   "context (every token once; the first costs log2(vocab) bits), summed in "
                                   "float64 and divided by the text's UTF-8 length.")
    _common(b)
    b.add_argument("--text", action="append", required=True, metavar="FILE",
                   help="a UTF-8 text file to score (repeatable)")
    b.add_argument("--context", type=positive_int, default=None,
                   help="tokens per window (default: the model's max_seq_len)")
    b.add_argument("--stride", type=positive_int, default=None,
                   help="tokens the window moves each time; 1 .. context-1 (default: half the context)")
    b.add_argument("--max-chars", type=positive_int, default=None, help="score only the first N characters")
    b.add_argument("--batch-size", type=positive_int, default=16, help="windows per forward pass")
    b.add_argument("--out", default=None, help="write the numbers to this JSON file")
    b.set_defaults(fn=_cmd_bpb)

    c = sub.add_parser("compare", help="several results side by side (Markdown)")
    c.add_argument("results", nargs="+", help="results.json files or the folders holding them")
    c.add_argument("--groups", action="store_true", help="also per subject")
    c.add_argument("--out", default=None, help="write the Markdown table here (default: print it)")
    c.set_defaults(fn=_cmd_compare)

    s = sub.add_parser("scaling", help="fit L = E + A x^-alpha to a sweep and plot it")
    s.add_argument("sweep", help="JSON list or JSON lines of runs with loss and flops (or params and tokens)")
    s.add_argument("--x", default="flops", choices=["flops", "params", "tokens"])
    s.add_argument("--out", default=None, help="PNG path (default: the sweep file with .png)")
    s.set_defaults(fn=_cmd_scaling)

    t = sub.add_parser("tasks", help="list the built-in tasks")
    t.set_defaults(fn=_cmd_tasks)
    return p


if __name__ == "__main__":
    from lmforge.cli import main

    raise SystemExit(main())
