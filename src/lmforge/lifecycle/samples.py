"""The `sample` stage of `lmforge run`: completions of the recipe's prompts, streamed from the
model read back from disk (what a user of the checkpoint would get)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rich.console import Console

from lmforge.recipe import SampleSection


def sample_completions(model_dir: Path, section: SampleSection, seed: int, device: torch.device,
                       console: Console) -> list[dict]:
    """Read the model back from disk and stream a completion for each prompt."""
    from lmforge.generate import SamplingParams, stream
    from lmforge.inference import load_for_inference, with_stop_ids

    model, tok = load_for_inference(model_dir, device)
    results = []
    for i, prompt in enumerate(section.prompts):
        # One seed per prompt: with a shared random stream, a weak model's samples converge.
        params = with_stop_ids(SamplingParams(max_new_tokens=section.max_new_tokens, temperature=section.temperature,
                                              top_k=section.top_k, top_p=section.top_p, seed=seed + i), tok)
        console.print(f"[bold]{prompt}[/bold]", end="")
        start, n, text = time.perf_counter(), 0, ""
        for event in stream(model, [tok.encode(prompt, add_bos=True)], params, tok):
            console.print(event.text, end="", markup=False, highlight=False)
            text += event.text
            n += event.token_id is not None
        seconds = time.perf_counter() - start
        console.print(f"  [dim]({n} tokens, {n / seconds:.0f} tok/s)[/dim]")
        results.append({"prompt": prompt, "completion": text, "tokens": n, "seconds": round(seconds, 3)})
    return results
