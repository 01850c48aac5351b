"""Our model against transformers' LlamaForCausalLM on weights exported to the Llama format."""

import pytest
import torch

from lmforge.generate import SamplingParams, generate
from lmforge.model import save_model
from tests.helpers import tiny_model

transformers = pytest.importorskip("transformers")

CASES = [(ratio, scaling) for ratio in (1, 2, 4) for scaling in ("none", "dynamic")]


def _hf(path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.mark.parametrize("ratio,scaling", CASES)
def test_logits_match_transformers_llama(tmp_path, ratio, scaling):
    model = tiny_model(seed=ratio, ratio=ratio, rope_scaling=scaling)
    save_model(model, tmp_path, fmt="llama")
    hf = _hf(tmp_path)
    # 48 tokens > max_seq_len 32, so the dynamic-NTK base is exercised where enabled.
    x = torch.randint(0, model.cfg.vocab_size, (3, 48), generator=torch.Generator().manual_seed(ratio))
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("ratio,scaling", CASES)
def test_greedy_generation_matches_transformers(tmp_path, ratio, scaling):
    model = tiny_model(seed=10 + ratio, ratio=ratio, rope_scaling=scaling)
    save_model(model, tmp_path, fmt="llama")
    hf = _hf(tmp_path)
    prompt = torch.randint(3, model.cfg.vocab_size, (1, 20), generator=torch.Generator().manual_seed(ratio))
    n = 24  # 20 + 24 > 32: generation runs past the window, into dynamic NTK
    ours = generate(model, [prompt[0].tolist()], SamplingParams(max_new_tokens=n))[0].token_ids
    # An explicit attention mask: generate() would otherwise treat any token equal to the pad id as padding.
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                         do_sample=False, eos_token_id=None, pad_token_id=model.cfg.pad_token_id)
    assert ours == theirs[0, prompt.shape[1]:].tolist()


def test_norm_head_is_baked_into_the_export(tmp_path):
    model = tiny_model(seed=3, norm_head=True)
    with torch.no_grad():
        model.output.weight.mul_(7.0)  # rows far from unit norm, so baking matters
    save_model(model, tmp_path, fmt="llama")
    x = torch.randint(0, model.cfg.vocab_size, (2, 16))
    with torch.no_grad():
        assert (model(x) - _hf(tmp_path)(x).logits).abs().max().item() <= 1e-5
