"""Structured outputs: lmforge's token masks vs xgrammar's (the engine vLLM and SGLang use), and what a
constraint costs the engine.

1. **Masks.** The same vocabulary (a tokenizer's tokens as raw bytes), the same JSON Schemas, the same
   token sequence: a valid document written with ", " and ": " and tokenized. At each step each side
   computes the set of allowed next tokens (stop tokens included once the value is whole) and then
   accepts the document's token. Reported: schema compile time, mean and 99th-percentile time per
   step, and how the sets compare: xgrammar with `any_whitespace=False` and those separators allows
   one spacing, lmforge also the compact one, so lmforge's set should contain xgrammar's at every
   step (checked, printed), leaving out tokens with raw control characters, which xgrammar lets into
   strings and JSON forbids (lmforge refuses them).
2. **Engine.** The demo's chat model answering 8 prompts at once, 160 tokens each (no stop tokens;
   schemas that cannot close sooner), free and under three constraints: generated tokens per second,
   for a first batch (cold masks) and the median of 5 later ones (the masks it cached).

    .venv/bin/python bench/structured_bench.py                         # needs: pip install xgrammar
    .venv/bin/python bench/structured_bench.py --tokenizer runs/tiny/sft/model --model runs/tiny/sft/model

xgrammar is not a dependency of lmforge (it pulls triton); without it, part 1 shows lmforge alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))
from tables import print_table  # noqa: E402

from lmforge.generate.token_mask import Matcher, TokenGrammar, Vocabulary  # noqa: E402
from lmforge.tokenizer import Tokenizer  # noqa: E402

QA = {"type": "object", "additionalProperties": False, "required": ["question", "answer"],
      "properties": {"question": {"type": "string", "maxLength": 200}, "answer": {"type": "string", "maxLength": 400}}}
QUESTIONS = {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string", "maxLength": 200}}
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags", "address"],
          "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                         "tags": {"type": "array", "items": {"enum": ["poet", "king", "fool"]}},
                         "address": {"type": "object", "additionalProperties": False,
                                     "required": ["city", "zip"],
                                     "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}},
                         "alive": {"type": ["boolean", "null"]}}}
DOCS = {
    "qa": (QA, {"question": "Who wrote the sonnets that the printer Thomas Thorpe published in 1609?",
                "answer": "William Shakespeare wrote them; Thorpe dedicated the quarto to 'Mr. W. H.', 1609."}),
    "questions": (QUESTIONS, ["When did the Globe Theatre burn down?", "Which king was Shakespeare's patron?",
                              "How many plays are in the First Folio?"]),
    "person": (PERSON, {"name": "Falstaff", "age": 62, "tags": ["fool", "king"],
                        "address": {"city": "Eastcheap", "zip": "EC3"}, "alive": None}),
}


def lmforge_steps(grammar: TokenGrammar, ids: list[int], stops: list[int]):
    t0 = time.perf_counter()
    matcher = Matcher(grammar, stops)
    compile_s = time.perf_counter() - t0
    times, masks = [], []
    for tok in ids + [None]:
        t0 = time.perf_counter()
        mask = matcher.mask()
        if tok is not None:
            matcher.advance(tok)
        times.append(time.perf_counter() - t0)
        masks.append(mask)
    return compile_s, times, masks


def xgrammar_steps(xgr, info, schema: dict, ids: list[int], size: int):
    t0 = time.perf_counter()
    compiled = xgr.GrammarCompiler(info, max_threads=1).compile_json_schema(
        json.dumps(schema), any_whitespace=False, separators=(", ", ": "))
    matcher = xgr.GrammarMatcher(compiled)
    compile_s = time.perf_counter() - t0
    bitmask = xgr.allocate_token_bitmask(1, size)
    times, masks = [], []
    for tok in ids + [None]:
        t0 = time.perf_counter()
        matcher.fill_next_token_bitmask(bitmask)
        if tok is not None:
            assert matcher.accept_token(tok), f"xgrammar refused token {tok}"
        times.append(time.perf_counter() - t0)
        bits = bitmask[0].view(torch.int32)
        masks.append(((bits[:, None] >> torch.arange(32)) & 1).flatten()[:size].bool())
    return compile_s, times, masks


def ms(x: float) -> str:
    return f"{1000 * x:.3f}"


def masks_part(console, tok: Tokenizer, repeats: int, markdown: str | None) -> None:
    token_bytes = tok.token_bytes()
    t0 = time.perf_counter()
    vocab = Vocabulary(token_bytes)
    vocab_s = time.perf_counter() - t0
    stops = list(tok.stop_ids)
    try:
        import xgrammar as xgr
    except ImportError:
        xgr = None
        console.print("xgrammar is not installed: lmforge alone")
    if xgr is not None:
        t0 = time.perf_counter()
        info = xgr.TokenizerInfo(token_bytes, xgr.VocabType.RAW, vocab_size=len(token_bytes), stop_token_ids=stops)
        xgr_vocab_s = time.perf_counter() - t0
    console.print(f"vocabulary {len(token_bytes)} tokens; preprocessing: lmforge {vocab_s:.3f} s"
                  + (f", xgrammar {xgr_vocab_s:.3f} s" if xgr is not None else ""))
    rows = []
    for name, (schema, value) in DOCS.items():
        ids = tok.encode(json.dumps(value, ensure_ascii=False))
        t0 = time.perf_counter()
        grammar = TokenGrammar(schema, vocab)  # once per schema: a server keeps it for the next request
        compile_s = time.perf_counter() - t0
        ours = [lmforge_steps(grammar, ids, stops) for _ in range(repeats)]
        first, warm = ours[0], ours[-1]
        row = [name, str(len(ids) + 1), ms(compile_s), ms(statistics.mean(first[1])),
               ms(statistics.quantiles(first[1], n=100)[98]), ms(statistics.mean(warm[1]))]
        if xgr is not None:
            theirs = [xgrammar_steps(xgr, info, schema, ids, len(token_bytes)) for _ in range(repeats)]
            x = theirs[-1]
            # xgrammar lets raw control characters (bytes < 0x20) into strings, which JSON forbids
            # (RFC 8259 section 7) and lmforge refuses: those tokens are left out of the comparison.
            control = torch.tensor([any(c < 0x20 for c in t) for t in token_bytes])
            contains = all(bool((b & ~a & ~control).sum() == 0) for a, b in zip(first[2], x[2]))
            equal = sum(bool(torch.equal(a & ~control, b & ~control)) for a, b in zip(first[2], x[2]))
            row += [ms(x[0]), ms(statistics.mean(x[1])), ms(statistics.quantiles(x[1], n=100)[98]),
                    f"{statistics.mean(first[1]) / statistics.mean(x[1]):.1f}x",
                    f"{statistics.mean(warm[1]) / statistics.mean(x[1]):.1f}x",
                    f"{'yes' if contains else 'NO'}, equal at {equal}/{len(ids) + 1}"]
        rows.append(tuple(row))
    cols = ("schema", "steps", "lmforge compile ms", "lmforge ms/step", "p99", "ms/step, same schema again")
    if xgr is not None:
        cols += ("xgrammar compile ms", "xgrammar ms/step", "p99", "lmforge / xgrammar, first", "again",
                 "lmforge's set holds xgrammar's")
    print_table(console, "token masks along the same document (first request of each schema)", cols, rows,
                markdown)


def engine_part(console, model_dir: str) -> None:
    from lmforge.generate import Engine, SamplingParams
    from lmforge.inference import load_for_inference

    model, tok = load_for_inference(model_dir, device="cpu")[:2]
    prompts = [tok.encode_chat([{"role": "user", "content": f"Ask and answer a question about play {i}."}],
                               add_generation_prompt=True) for i in range(8)]
    # Schemas that do not close within the 160 tokens, so every side generates the same number.
    cases = (("free text", None), ("one long string", {"type": "string", "minLength": 2000}),
             ("array of numbers", {"type": "array", "minItems": 500, "items": {"type": "number"}}),
             ("qa objects", {"type": "array", "minItems": 50, "items": QA}))
    rows, free = [], None
    for label, schema in cases:
        engine = Engine(model, tok, kv_blocks=512, block_size=16, max_batch=8)
        times = []
        for _ in range(6):  # later batches meet the masks the first one cached, as a server's later requests do
            t0 = time.perf_counter()
            for i, p in enumerate(prompts):
                engine.add(p, SamplingParams(max_new_tokens=160, temperature=1.0, seed=i, json_schema=schema))
            n = sum(ev.token_id is not None for ev in engine.run())
            times.append(time.perf_counter() - t0)
        later = n / statistics.median(times[1:])
        free = free or later
        rows.append((label, str(n), f"{n / times[0]:.0f}", f"{later:.0f}", f"{later / free:.2f}"))
    print_table(console, f"engine, 8 requests at once, 160 tokens each, {model_dir}",
                ("constraint", "tokens", "tokens/s, first batch", "later batches (median of 5)", "vs free text"), rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", default="runs/tiny/sft/model", help="a tokenizer folder, or 'embedded:N' for a "
                   "BPE of N tokens trained on the embedded corpora (default: %(default)s)")
    p.add_argument("--model", default="runs/tiny/sft/model", help="a chat model for part 2 ('' skips it)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each side per schema (default: %(default)s)")
    p.add_argument("--markdown", help="also write the mask table as Markdown to this file")
    args = p.parse_args()
    if args.tokenizer.startswith("embedded:") and not args.tokenizer[9:].isdigit():
        p.error(f"--tokenizer {args.tokenizer!r}: embedded:N needs a number of tokens, e.g. embedded:32000")
    if not args.tokenizer.startswith("embedded:") and not Path(args.tokenizer).exists():
        p.error(f"--tokenizer {args.tokenizer}: no such tokenizer folder or file")
    if args.model and not Path(args.model).is_dir():
        p.error(f"--model {args.model}: no such model folder (or '' to skip part 2)")
    console = Console()
    torch.set_num_threads(1)
    if args.tokenizer.startswith("embedded:"):
        from lmforge.corpora import chinese_news_text, english_text, pydoc_text
        from lmforge.tokenizer import train_bpe

        tok = train_bpe([english_text(3_000_000), chinese_news_text(1_000_000), pydoc_text(1_000_000)],
                        vocab_size=int(args.tokenizer[9:]))
    else:
        tok = Tokenizer.load(args.tokenizer)
    masks_part(console, tok, args.repeats, args.markdown)
    if args.model:
        engine_part(console, args.model)


if __name__ == "__main__":
    main()
