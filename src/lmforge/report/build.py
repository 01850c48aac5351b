"""The run report: every stage's numbers and plots on one page, as Markdown, HTML and JSON.

`write_report(run_dir, ...)` reads the summaries the stages recorded (`lifecycle.stage`) and writes

    report.json   the numbers (what tests and scripts compare: no timings mixed into the metrics)
    report.md     for a terminal or a code host; images next to it in report/
    report.html   one static file, images inline (data: URIs), no network, no external script

Sections, in the order of the life cycle: the run (timings, MFU per stage), data (the funnel,
drops against the planted truth), tokenizer (bytes per token, English and Chinese), pre-training
(loss curves of both stages), evaluation (perplexity, the benchmark table, the NIAH heatmaps),
samples, and the exact config and library versions.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from lmforge.atomic import write_json
from lmforge.config import to_dict
from lmforge.machine import cpu_name
from lmforge.report.page import ReportPage, write_html, write_markdown
from lmforge.report.vl import vl_section
from lmforge.significance import describe

LIBRARIES = ("lmforge", "torch", "tokenizers", "safetensors", "numpy", "transformers", "trafilatura", "pycld2",
             "datasketch", "ray", "matplotlib")


# beside each table of task accuracy: the floor that no skill is needed for
ONE_ANSWER = ("\"One answer\" is the share of the task's most common reference: what a model scores that gives "
              "that answer to every prompt, so accuracy near it shows no skill")


def versions() -> dict:
    import torch

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({cpu_name()})"
    out["threads"] = torch.get_num_threads()
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x, fmt: str = ".3f") -> str:
    return "-" if x is None else format(x, fmt)


def collect(run_dir: Path, recipe, outcomes: dict) -> dict:
    """The report's numbers from the stage summaries (report.json)."""
    summaries = {name: o.summary for name, o in outcomes.items()}
    return {"run": {"name": recipe.run.name, "seed": recipe.run.seed, "dir": str(run_dir),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
            "timings": {name: {"status": o.status, "seconds": round(o.seconds, 2)} for name, o in outcomes.items()},
            **summaries, "config": to_dict(recipe), "versions": versions()}


def funnel_with_tokens(funnel: list[dict], shards: dict | None) -> list[dict]:
    """Funnel rows with `tokens_out` estimated from characters, at the tokens per character
    (per language) of the training shards."""
    from lmforge.data.report import estimated_tokens, tokens_per_char

    if not shards or "chars" not in shards:
        return funnel
    ratio = tokens_per_char(shards["tokens"].get("train", {}), shards["chars"].get("train", {}))
    return [{**r, "tokens_out": estimated_tokens(r.get("chars_out", {}), ratio), "tokens_exact": False} for r in funnel]


def _copy(src: Path, assets: Path, name: str) -> Path | None:
    if not src.is_file():
        return None
    dst = assets / name
    shutil.copyfile(src, dst)
    return dst


def build_page(data: dict, run_dir: Path, outcomes: dict, assets: Path) -> ReportPage:
    page = ReportPage(f"lmforge run: {data['run']['name']}")
    v = data["versions"]
    page.paragraph(f"Seed {data['run']['seed']}, created {data['run']['created']} on {v['device']} "
                  f"with torch {v.get('torch')}, lmforge {v.get('lmforge')}. Run folder: `{run_dir}`.")

    sec = page.section("Stages: timings and MFU")
    pre = data.get("pretrain", {}).get("stages", {})
    rows = []
    for name, t in data["timings"].items():
        rows.append([name, t["status"], f"{t['seconds']:.1f}", ""])
    for name, m in pre.items():
        rows.append([f"pretrain / {name}", "", f"{m['seconds']:.1f}",
                     f"{m['tokens_per_s'] or 0:,.0f} tokens/s, MFU {_pct(m['mfu'])}"])
    sec.table(["stage", "status", "seconds", "throughput"], rows)
    sec.paragraph("MFU is model FLOPs (6N + causal attention counted once, per token) over the device's peak: on a "
                  "CPU one core's best matmul times the threads, never below the best figure seen on this CPU model, "
                  "so a busy machine lowers MFU instead of raising it (docs/training.md); a stage marked `skipped` "
                  "was done before with the same settings and inputs.")

    if "data" in data and data["data"].get("corpus"):
        d = data["data"]
        sec = page.section(f"Data: the embedded {d['corpus']} corpus")
        sec.paragraph("Taken as it is (no crawl, no curation), split by whole texts: the model never sees the "
                      "held-out ones, which are the validation text.")
        sec.table(["split", "texts", "characters", "which"],
                  [[split, str(c["documents"]), f"{c['chars']:,}", ", ".join(c["texts"][:6])
                    + (", ..." if len(c["texts"]) > 6 else "")] for split, c in d["splits"].items()])
    elif "data" in data:
        d = data["data"]
        sec = page.section("Data: the curation funnel")
        if "crawl" in data:
            sec.paragraph(f"Input: the demo crawl, {data['crawl']['pages']} pages with planted cases "
                          f"({', '.join(f'{k} {n}' for k, n in data['crawl']['kinds'].items())}).")
        from lmforge.data.report import CARDS_NOTE, DEMO_TRUTH_NOTE, funnel_table, plot_funnel

        funnel = funnel_with_tokens(d["funnel"], data.get("shards"))
        sec.table(*funnel_table(funnel, top_reasons=None))
        sec.paragraph("Tokens (~) are estimated from each stage's characters per language times the tokens per "
                      "character the shards stage measured with the run's tokenizer.")

        sec.image(plot_funnel({"funnel": funnel}, assets / "funnel.png"),
                  "the data funnel: documents and tokens kept after each stage")
        truth = d.get("truth") or {}
        if truth.get("stages"):
            sec.paragraph(f"Against the crawl's planted truth (which stage each bad page should be dropped at), "
                          f"{truth.get('measured_on', DEMO_TRUTH_NOTE)}; {CARDS_NOTE}:")
            sec.table(["stage", "dropped", "planted", "precision", "recall"],
                      [[name, str(s.get("dropped")), str(s.get("planted")), _pct(s.get("precision")),
                        _pct(s.get("recall"))] for name, s in truth["stages"].items() if name not in d["branches"]])

    if "tokenizer" in data:
        t, s = data["tokenizer"], data.get("shards", {})
        sec = page.section("Tokenizer")
        sec.paragraph(f"Byte-level BPE, {t['vocab_size']} tokens, trained on {t['train_chars']:,} characters "
                      f"of curated text in {t['seconds']:.1f}s. Compression on held-out documents:")
        sec.table(["text", "bytes / token"], [[k, f"{v:.2f}"] for k, v in t["bytes_per_token"].items()])
        if s:
            sec.table(["split", "documents", "tokens by language"],
                      [[split, str(s["docs"].get(split, "-")), ", ".join(f"{k} {n:,}" for k, n in langs.items())]
                       for split, langs in s["tokens"].items()])

    if pre:
        p = data["pretrain"]
        sec = page.section("Pre-training")
        m = p["model"]
        sec.paragraph(f"InternLM2 architecture, {p['params'] / 1e6:.2f}M parameters: dim {m['dim']}, "
                      f"{m['n_layers']} layers, {m['n_heads']} query / {m['n_kv_heads']} kv heads, "
                      f"ffn {m['ffn_dim']}, vocab {m['vocab_size']}.")
        sec.table(["stage", "steps", "tokens", "train loss (last 10)", "val loss", "val bits / byte", "tokens/s", "MFU",
                   "skipped steps"],
                  [[name, str(s["steps"]), f"{s['tokens']:,}", _num(s["loss"]), _num(s["val_loss"]),
                    _num(s.get("val_bpb")), f"{s['tokens_per_s'] or 0:,.0f}", _pct(s["mfu"]), str(s["skipped"])]
                   for name, s in pre.items()])
        sec.paragraph("Validation bits per byte: the validation loss summed over the targets that stand for text, "
                      "over their UTF-8 bytes (comparable across tokenizers; the evaluation section scores the "
                      "held-out text with a sliding window instead).")
        if p.get("loss_png"):
            png = _copy(outcomes["pretrain"].folder / p["loss_png"], assets, "loss.png")
            if png:
                sec.image(png, "training and validation loss of every stage")

    if "eval" in data:
        e = data["eval"]
        sec = page.section("Evaluation")
        if e.get("perplexity"):
            sec.paragraph("Perplexity on the held-out validation documents, at the model's window:")
            sec.table(["language", "tokens", "perplexity", "bits / byte"],
                      [[k, str(r["tokens"]), f"{r['ppl']:.2f}", f"{r['bits_per_byte']:.3f}"]
                       for k, r in e["perplexity"].items()])
        if e.get("bpb"):
            sec.paragraph("Bits per UTF-8 byte of the held-out text (`lmforge eval bpb`: a sliding window at the "
                          "model's context, stride half of it, every token scored once), comparable across "
                          "tokenizers:")
            sec.table(["text", "bytes", "tokens", "bits / token", "bits / byte"],
                      [[k, f"{r['bytes']:,}", f"{r['tokens']:,}", f"{r['bits_per_token']:.3f}", f"{r['bpb']:.4f}"]
                       for k, r in e["bpb"].items()])
        if e.get("benchmarks"):
            sec.paragraph(f"Benchmarks ({data['config']['eval']['limit'] or 'all'} examples each):")
            sec.table(["task", "mode", "n", "metric", "score"],
                      [[name, b["mode"], str(b["n"]), metric, f"{100 * value:.1f}"]
                       for name, b in e["benchmarks"].items() for metric, value in b["metrics"].items()])
        before = e.get("niah_before") or {}
        for kind, n in (e.get("niah") or {}).items():
            sec.paragraph(f"Needle in a haystack ({kind}): average score {n['average']:.1f}, "
                          f"window {n['window']} tokens (dashed line).")
            b = before.get(kind)
            if b and n.get("before_after"):
                sec.paragraph(f"Before the long-context stage (the model after '{before['stage']}', window "
                              f"{b['window']}) and after it; exact retrieval in % by context length:")
                rows = [[label, *[f"{100 * sum(col) / len(col):.0f}" for col in zip(*r["exact"])]]
                        for label, r in ((f"after '{before['stage']}'", b), ("after the long stage", n)) if r.get("exact")]
                if rows:
                    sec.table(["model", *[str(x) for x in n["lengths"]]], rows)
                if b.get("answer_logprob_by_length") and n.get("answer_logprob_by_length"):
                    sec.paragraph("Log-likelihood of the right answer (nats; it moves before exact retrieval does):")
                    sec.table(["model", *[str(x) for x in n["lengths"]]],
                              [[label, *[f"{r['answer_logprob_by_length'][str(x)]:.1f}" for x in n["lengths"]]]
                               for label, r in ((f"after '{before['stage']}'", b), ("after the long stage", n))])
                png = _copy(outcomes["eval"].folder / n["before_after"], assets, f"niah_{kind}_before_after.png")
                if png:
                    sec.image(png, f"NIAH heatmaps ({kind}) before and after the long-context stage")
                continue
            png = _copy(outcomes["eval"].folder / n["heatmap"], assets, f"niah_{kind}.png")
            if png:
                sec.image(png, f"NIAH heatmap ({kind}): score by context length and needle depth")
        _long_context_variants(sec, e, outcomes, assets)

    if "sample" in data:
        sec = page.section("Samples")
        sec.table(["prompt", "completion"], [[r["prompt"], r["completion"]] for r in data["sample"]["samples"]])

    if any(k in data for k in ("sft", "rm", "polar", "rl")):
        _alignment_section(page, data.get("sft"), data.get("rm"), data.get("polar"))
    if "rl" in data:
        _rl_section(page, data["rl"], data.get("sft"), outcomes, assets)
    if "mimg" in data:
        _mimg_section(page, data["mimg"])
    if any(k in data for k in ("vl_pretrain", "vl_sft", "vl_mpo")):
        vl_section(page, data, outcomes, assets)

    sec = page.section("Config and versions")
    sec.code(json.dumps(data["config"], indent=2, ensure_ascii=False))
    sec.table(["library", "version"], [[k, str(val)] for k, val in data["versions"].items()])
    return page


def _alignment_section(page: ReportPage, sft: dict | None, rm: dict | None, polar: dict | None) -> None:
    """SFT's held-out task accuracy before and after, the reward models' pairwise accuracy (members,
    ensemble rules, soup) on held-out pairs and on the planted exploit, POLAR with and without its
    pre-training."""
    sec = page.section("Alignment")
    if sft:
        sec.paragraph(f"Supervised fine-tuning: {sft['conversations']:,} conversations ({sft['assistant_tokens']:,} "
                      f"assistant tokens, the only ones in the loss), {sft['steps']} steps"
                      + (f", LoRA rank {sft['lora_rank']}" if sft.get("lora_rank") else ", full fine-tuning")
                      + f"; final loss {_num(sft.get('final_loss'))}. The chat model is `{sft.get('model')}`.")
        before, after = sft.get("accuracy_before"), sft.get("accuracy_after")
        if after:
            floor = sft.get("one_answer") or {}
            pk = sft.get("pass_at_k") or {}
            ceiling = pk.get("accuracy") or {}
            pk_col = f"pass@{pk.get('k')} (T {pk.get('temperature')})"
            sec.paragraph("Held-out accuracy on the checkable tasks (greedy answers, each judged by its task's "
                          "checker), before and after SFT" + (f". {ONE_ANSWER}" if floor else "")
                          + (f". {pk_col}: the share of prompts that any of {pk.get('k')} sampled answers gets right, "
                             "the ceiling RL (which reinforces what the sampler finds) can lift greedy accuracy "
                             "towards; on a task with few possible answers (count's 0, 1 or 2) guessing alone "
                             "reaches it" if ceiling else "") + ":")
            sec.table(["task", "before", "after", *([pk_col] if ceiling else []), *(["one answer"] if floor else [])],
                      [[t, _pct(before.get(t) if before else None), _pct(v), *([_pct(ceiling.get(t))] if ceiling else []),
                        *([_pct(floor.get(t))] if floor else [])]
                       for t, v in after.items()])
        if sft.get("samples"):
            sec.table(["task", "prompt", "answer", "reference", "verdict"],
                      [[r["task"], r["prompt"], r["answer"], r["reference"], r["verdict"]] for r in sft["samples"]])
    if rm and rm.get("accuracy"):
        probes = list(rm["accuracy"])
        sec.paragraph(f"Reward models ({rm['loss']} loss) from the SFT model on {rm['pairs']:,} pairs labelled by the "
                      "checkers (correct > wrong > malformed). Pairwise accuracy, the share of pairs whose better "
                      "answer scores higher, on held-out pairs"
                      + (" and on the exploit probe (a plain correct answer against a wrong one that restates the "
                         f"question; member 0 also saw {rm['biased_pairs']} pairs from a labeller biased towards "
                         "restating)" if "exploit" in probes else "") + ":")
        sec.table(["model", *probes],
                  [[name, *(_pct(rm["accuracy"][p].get(name)) for p in probes)] for name in rm["accuracy"][probes[0]]])
    if polar and polar.get("accuracy"):
        pool = ", ".join(f"{Path(p['policy']).name} (T={p['temperature']})" for p in polar["policies"])
        sec.paragraph(f"POLAR reward model (scores a candidate against a reference answer): pre-trained on "
                      f"{polar['pretraining_pairs']:,} pairs from a pool of {len(polar['policies'])} policies ({pool}; "
                      f"same-policy answers should score higher), fine-tuned on {polar['finetuning_pairs']:,} pairs "
                      f"ranked by the checkers. Held-out triples ({polar['held_out_triples']}), reference = the "
                      "task's answer:")
        cols = list(next(iter(polar["accuracy"].values())))
        sec.table(["model", *cols], [[name, *(_pct(row[c]) for c in cols)] for name, row in polar["accuracy"].items()])


def _long_context_variants(sec, e: dict, outcomes: dict, assets: Path) -> None:
    """NeedleBench's multi-needle / multi-hop grids and the user's long task files, when the recipe ran them."""
    for key, v in (e.get("niah_variants") or {}).items():
        what = ("several facts in one haystack, all asked for; score = share retrieved"
                if v["variant"] == "multi_needle" else "a chain of facts to follow; score 100 for the final answer")
        sec.paragraph(f"NeedleBench {v['variant'].replace('_', '-')} ({v['kind']}: {what}): average score "
                      f"{v['average']:.1f}, exact {100 * v['exact_average']:.1f}%, window {v['window']} tokens.")
        png = _copy(outcomes["eval"].folder / v["heatmap"], assets, f"niah_{key}.png")
        if png:
            sec.image(png, f"{v['variant'].replace('_', '-')} NIAH heatmap ({v['kind']})")
    for name, r in (e.get("long_tasks") or {}).items():
        sec.paragraph(f"Long task file {name} ({r['file']}, metric {r['metric']}, {r['n']} records, {r['skipped']} "
                      f"skipped, prompts cut in the middle to {r['max_length']} tokens): score {r['score']:.1f}.")
        sec.table(["length (tokens)", "n", "score"],
                  [[b, str(v["n"]), f"{v['score']:.1f}"] for b, v in r["by_bucket"].items() if v["n"]])


def _mimg_section(page: ReportPage, m: dict) -> None:
    sec = page.section("Long-context instructions (MIMG)")
    sec.paragraph(f"LongMIT's agents over the served SFT model (lmforge serve's engine on a local port): "
                  f"{m['conversations']} multi-hop conversations written, {m['requests']} agent calls "
                  f"({m['cache_hits']} from the cache). The agents ask for structured outputs (JSON Schema), "
                  "so their answers parse; the scores then drop what is not grounded in the documents or does not "
                  "use every hop. Items in and out of each stage, and why the rest were dropped:")
    sec.table(["stage", "in", "out", "dropped because"],
              [[name, str(st["in"]), str(st["out"]),
                ", ".join(f"{k} {v}" for k, v in sorted(st["skipped"].items(), key=lambda kv: -kv[1])) or "-"]
               for name, st in m["stages"].items()])
    if m.get("failures"):
        sec.paragraph("Failed calls: " + ", ".join(f"{k} {v}" for k, v in m["failures"].items()))


def _rl_section(page: ReportPage, rl: dict, sft: dict | None, outcomes: dict, assets: Path) -> None:
    """Online RL's held-out accuracy (base, SFT, RL) and its reward / accuracy curves."""
    sec = page.section("Online RL")
    intro = (f"{rl['algorithm'].upper()} from the SFT model for {rl['steps']} steps: rollouts from the inference "
             "engine (colocated with the trainer), rewards from the tasks' checkers.")
    base = sft.get("accuracy_before") if sft else None
    before, after = rl.get("accuracy_before") or {}, rl.get("accuracy_after") or {}
    floor = rl.get("one_answer") or {}
    if rl.get("accuracy_every_after"):  # trained on some tasks: every task's accuracy, and the subset's own
        sec.paragraph(f"{intro} It trained on {', '.join(rl['tasks'])} only, whose held-out greedy accuracy went from "
                      f"{_pct(before.get('all'))} to {_pct(after.get('all'))}. Every task's held-out greedy accuracy"
                      + (f". {ONE_ANSWER}" if floor else "") + ":")
        before, after = rl["accuracy_every_before"], rl["accuracy_every_after"]
        floor = rl.get("one_answer_every") or {}
    else:
        sec.paragraph(f"{intro} Held-out greedy accuracy" + (f". {ONE_ANSWER}" if floor else "") + ":")
    sec.table(["task", "pre-trained", "SFT", "RL", *(["one answer"] if floor else [])],
              [[t, _pct(base.get(t) if base else None), _pct(before.get(t)), _pct(v),
                *([_pct(floor.get(t))] if floor else [])] for t, v in after.items()])
    changes = {k: v for k, v in (rl.get("change") or {}).items() if v}
    if changes:  # the same prompts scored before and after: McNemar's test on the ones that changed verdict
        labels = {"trained": f"on {', '.join(rl['tasks'])}" if changes.get("every") else "on every task",
                  "every": "on every task"}
        sec.paragraph("The change, prompt by prompt on the same held-out prompts (McNemar's exact test): "
                      + "; ".join(f"{labels[k]}, {describe(v['all'])}" for k, v in changes.items()) + ".")
    if rl.get("curves"):
        png = _copy(outcomes["rl"].folder / rl["curves"], assets, "rl_curves.png")
        if png:
            sec.image(png, "RL: rollout reward and accuracy per step, held-out accuracy (reward rising while "
                           "held-out accuracy falls would be reward hacking)")


def write_report(run_dir: Path, assets: Path, recipe, outcomes: dict, console=None) -> dict:
    """Write report.json, report.md and report.html into `run_dir`; returns a summary of it."""
    start = time.perf_counter()
    data = collect(run_dir, recipe, outcomes)
    write_json(run_dir / "report.json", data)
    page = build_page(data, run_dir, outcomes, assets)
    write_markdown(page, run_dir / "report.md")
    write_html(page, run_dir / "report.html")
    if console is not None:
        console.print(f"report: {run_dir / 'report.html'} ({len(page.sections)} sections, "
                      f"{time.perf_counter() - start:.1f}s)")
    return {"sections": [s.title for s in page.sections], "files": ["report.md", "report.html", "report.json"]}
