"""The report's vision-language section (`[vl]` runs; InternVL3, arXiv 2504.10479; docs/papers.md §10):
held-out image-question accuracy after native pre-training, SFT and MPO, by kind and language, MPO's
pairs, and held-out images with the final model's answers."""

from __future__ import annotations

from pathlib import Path

from lmforge.report.page import ReportPage


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def vl_section(page: ReportPage, data: dict, outcomes: dict, assets: Path) -> None:
    pre, sft, mpo = data.get("vl_pretrain") or {}, data.get("vl_sft") or {}, data.get("vl_mpo") or {}
    sec = page.section("Vision-language (InternVL3-style)")
    if pre:
        sec.paragraph(f"A ViT and MLP projector joined to the pre-trained language model ({pre['params'] / 1e6:.2f}M "
                      f"parameters in all), trained together on {pre['image_samples']:,} generated image-text samples "
                      f"(captions and questions) and {pre['text_rows']:,} text rows for {pre['steps']} steps (native "
                      f"multimodal pre-training, V2PE deltas drawn per image); then SFT on the questions "
                      f"({sft.get('steps', '-')} steps) and MPO on answers judged by the checkers "
                      f"({mpo.get('steps', '-')} steps). Held-out accuracy, greedy answers:")
    stages = [("joined, untrained", pre.get("accuracy_before")), ("native pre-training", pre.get("accuracy_after")),
              ("SFT", sft.get("accuracy_after")), ("MPO", mpo.get("accuracy_after"))]
    stages = [(name, acc) for name, acc in stages if acc]
    if stages:
        kinds = sorted({k for _, acc in stages for k in acc["by_kind"]})
        langs = sorted({k for _, acc in stages for k in acc["by_lang"]})
        rows = [["all", *(_pct(acc["accuracy"]) for _, acc in stages)],
                ["all, images swapped (blind)", *(_pct(acc.get("blind")) for _, acc in stages)]]
        rows += [[f"lang {lang}", *(_pct(acc["by_lang"].get(lang)) for _, acc in stages)] for lang in langs]
        rows += [[kind, *(_pct(acc["by_kind"].get(kind)) for _, acc in stages)] for kind in kinds]
        sec.table(["held-out questions", *(name for name, _ in stages)], rows)
        sec.paragraph("\"Blind\" asks every question about another held-out image: what the language model "
                      "guesses without looking (answer priors). The gap between the two rows is what the images "
                      "contribute.")
    if mpo.get("pairs"):
        c = mpo["pairs"]
        sec.paragraph(f"MPO's data: {c['samples']:,} answers sampled for {c['questions']} training questions, "
                      f"{c['samples_right']:,} judged right; {c['pairs']} pairs ({c['all_right']} questions always "
                      f"answered right give none; {c['none_right']} never right take the reference as chosen).")
    examples = [s for s in mpo.get("samples") or [] if "image" in s]
    if examples and "vl_mpo" in outcomes:
        sec.paragraph("Held-out images with the final model's answers (shown at 3x, nearest neighbour):")
        for s in examples:
            src = outcomes["vl_mpo"].folder / s["image"]
            if not src.is_file():
                continue
            dst = assets / f"vl_example_{s['index']}.png"
            _enlarged(src, dst, 3)
            verdict = "right" if s["correct"] else f"wrong; the answer is {s['answer']}"
            sec.paragraph(f"{s['question']} The model: {s['prediction']!r} ({verdict}).")
            sec.image(dst, f"{s['question']} -> {s['prediction']!r}, {verdict}")


def _enlarged(src: Path, dst: Path, factor: int) -> None:
    """A copy of the small demo image `factor` times larger, so its shapes and digits can be seen."""
    from PIL import Image

    with Image.open(src) as im:
        im.resize((im.width * factor, im.height * factor), Image.Resampling.NEAREST).save(dst)
