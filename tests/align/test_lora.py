"""LoRA against its formula (W + alpha/r B A), against peft's LoRA on the same matrices, and in the
model: it starts as the model itself, only adapters train, and merging keeps the function."""

import pytest
import torch

from lmforge.align.lora import LoRA, apply_lora, lora_parameters, merge_lora
from tests.helpers import tiny_model


def test_parametrization_is_the_formula():
    torch.manual_seed(0)
    lora = LoRA(6, 5, rank=2, alpha=4.0)
    torch.nn.init.normal_(lora.lora_B)
    w = torch.randn(6, 5)
    assert torch.allclose(lora(w), w + 2.0 * lora.lora_B @ lora.lora_A)


def test_matches_peft_lora_on_a_linear_layer():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(8, 6, bias=False))
    ref = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"], lora_dropout=0.0))
    layer = ref.base_model.model[0]
    torch.nn.init.normal_(layer.lora_B["default"].weight)
    ours = torch.nn.Sequential(torch.nn.Linear(8, 6, bias=False))
    ours[0].weight.data.copy_(layer.base_layer.weight)
    from torch.nn.utils import parametrize

    parametrize.register_parametrization(ours[0], "weight", LoRA(6, 8, rank=4, alpha=8))
    p = ours[0].parametrizations.weight[0]
    p.lora_A.data.copy_(layer.lora_A["default"].weight)
    p.lora_B.data.copy_(layer.lora_B["default"].weight)
    x = torch.randn(3, 8)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)


def test_in_the_model_starts_unchanged_trains_adapters_only_and_merges():
    model = tiny_model(seed=2).train()
    ids = torch.randint(0, model.cfg.vocab_size, (2, 16))
    before = model(ids).detach()
    names = apply_lora(model, rank=4, alpha=8)
    assert len(names) == 5 * model.cfg.n_layers
    assert torch.allclose(model(ids), before, atol=1e-6)  # B = 0: the model as it was
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in lora_parameters(model)}
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    for _ in range(3):
        loss, _ = model(ids, targets=ids.roll(-1, 1))
        loss.backward()
        opt.step()
        opt.zero_grad()
    adapted = model(ids).detach()
    assert not torch.allclose(adapted, before, atol=1e-4)
    assert merge_lora(model) == len(names)
    assert set(model.state_dict()) == set(tiny_model().state_dict())  # plain names again, exportable
    assert torch.allclose(model(ids), adapted, atol=1e-5)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="rank = 0"):
        apply_lora(tiny_model(), rank=0, alpha=1)
    with pytest.raises(ValueError, match="not layers of the model"):
        apply_lora(tiny_model(), rank=2, alpha=1, targets=("q_proj",))
