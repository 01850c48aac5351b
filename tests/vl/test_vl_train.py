"""The vision-language training helpers: joining a ViT to a pre-trained language model (or taking a
pretrained tower), MPO's pairs from judged samples, and MPO's rows and reference log-probabilities."""

import math
from types import SimpleNamespace

import pytest
import torch

from lmforge.align.losses import MPOLoss
from lmforge.model import save_model
from lmforge.model.config import preset
from lmforge.model.model import InternLM2
from lmforge.model.vision import save_vl_model
from lmforge.tokenizer import IMAGE_TOKENS, train_bpe
from lmforge.vl import train as vt
from lmforge.vl.config import VLSection
from lmforge.vl.synth import demo_split


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vltrain")
    train, held = demo_split(12, 4, 0)
    tok = train_bpe([f"{e.question} {e.answer} {e.caption}" for e in train] * 4, 400,
                    extra_special_tokens=IMAGE_TOKENS)
    llm = InternLM2(preset("tiny", vocab_size=tok.vocab_size, dim=64, n_layers=2, n_heads=2, n_kv_heads=2,
                           ffn_dim=128, max_seq_len=256))
    llm.init_weights(3)
    save_model(llm, tmp / "llm", fmt="internlm2")
    tok.save(tmp / "llm")
    section = VLSection(enabled=True, seq_len=96, vision_dim=32, vision_heads=2, vision_mlp=64)
    return SimpleNamespace(tmp=tmp, tok=tok, llm=llm, train=train, held=held, section=section)


def test_the_language_model_keeps_its_weights_and_a_pretrained_tower_can_start_the_eye(setup):
    model = vt.build_vl_model(setup.section, setup.tmp / "llm", setup.tok, seed=0)
    for k, v in setup.llm.state_dict().items():
        assert torch.equal(model.language_model.state_dict()[k], v)
    with torch.no_grad():
        for p in model.vision_model.parameters():
            p.add_(0.5)
    save_vl_model(model, setup.tmp / "donor")
    again = vt.build_vl_model(VLSection(enabled=True, seq_len=96, vision_init=str(setup.tmp / "donor")),
                              setup.tmp / "llm", setup.tok, seed=1)
    for k, v in model.vision_model.state_dict().items():
        assert torch.equal(again.vision_model.state_dict()[k], v)
    assert again.cfg.vision == model.cfg.vision  # the tower's own sizes, not the section's defaults


def test_preference_pairs_take_a_right_sample_or_the_reference_and_skip_questions_always_right(setup):
    exs = setup.train[:3]
    right = lambda ex, a: a == ex.answer  # noqa: E731
    answers = [[exs[0].answer, "zzz"], ["yyy", "xxx"], [exs[2].answer, exs[2].answer]]
    pairs, counts = vt.preference_pairs(exs, answers, right, seed=0)
    assert [(p[0], p[1]) for p in pairs] == [(exs[0], exs[0].answer), (exs[1], exs[1].answer)]
    assert pairs[0][2] == "zzz" and pairs[1][2] in ("yyy", "xxx")
    assert counts == {"questions": 3, "all_right": 1, "none_right": 1, "samples_right": 3, "samples": 6, "pairs": 2}


def test_mpo_rows_and_reference_give_dpo_log2_at_the_start(setup):
    model = vt.build_vl_model(setup.section, setup.tmp / "llm", setup.tok, seed=0)
    cfg, tok = model.cfg, setup.tok
    samples = []
    for ex in setup.train[:4]:
        pixels = vt.image_tiles(ex.image, cfg, 1)
        samples += [vt.question_sample(tok, ex, pixels, cfg.num_image_token, ex.answer),
                    vt.question_sample(tok, ex, pixels, cfg.num_image_token, "wrong answer")]
    ref = vt.reference_logps(model, samples, cfg, 0, chunk=3)
    assert ref.shape == (4, 2) and (ref < 0).all()
    batch = vt.pair_batch(samples, [2, 0], cfg, 0, ref)
    assert batch.pixel_values.shape[0] == 4  # two pairs, one tile per answer row
    assert torch.equal(batch.ref_logps, ref[[2, 0]].reshape(-1))
    model.train()
    loss, parts = MPOLoss(bco_shift=False)(model, batch, divisor=2.0)
    assert float(parts["dpo"]) == pytest.approx(math.log(2), abs=1e-5)  # policy == reference
    assert float(parts["bco"]) == pytest.approx(2 * math.log(2), abs=1e-5)
    loss.backward()
    assert model.vision_model.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0
