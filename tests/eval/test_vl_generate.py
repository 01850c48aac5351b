"""The image prompt's layout (token counts, multi-image, placeholders) and greedy decoding with V2PE
positions on a tiny random InternVL and on a scripted stand-in model."""

import pytest
import torch

from lmforge.corpora import english_text
from lmforge.eval import vl_generate
from lmforge.eval.vl_generate import VLQuery, vl_prompt_ids
from lmforge.tokenizer import IMAGE_TOKENS, train_bpe
from lmforge.tokenizer.special import IM_END, IMG_CONTEXT, IMG_END, IMG_START


@pytest.fixture(scope="module")
def vl_tok():
    return train_bpe([english_text(100_000)], vocab_size=600, extra_special_tokens=IMAGE_TOKENS)


def test_prompt_layout_one_image(vl_tok):
    tok = vl_tok
    ids = vl_prompt_ids(tok, "What colour is the square?", n_tiles=3, num_image_token=16)
    ctx, start, end = (tok.token_to_id(t) for t in (IMG_CONTEXT, IMG_START, IMG_END))
    assert ids.count(ctx) == 3 * 16
    first = ids.index(ctx)
    assert ids[first - 1] == start and ids[first + 48] == end and ids[first:first + 48] == [ctx] * 48
    expected = ("<s><|im_start|>user\n<img>" + IMG_CONTEXT * 48 + "</img>\nWhat colour is the square?<|im_end|>\n"
                "<|im_start|>assistant\n")
    assert tok.decode(ids) == expected
    assert ids == tok.encode(expected)  # the spliced ids are the whole string's ids
    assert ids[0] == tok.bos_id


def test_prompt_system_several_images_and_placeholders(vl_tok):
    tok = vl_tok
    ctx = tok.token_to_id(IMG_CONTEXT)
    ids = vl_prompt_ids(tok, "Same colour?", [2, 1], 4, system="Be brief.")
    text = tok.decode(ids)
    assert text.startswith("<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nImage-1: <img>")
    assert ("Image-1: <img>" + IMG_CONTEXT * 8 + "</img>\nImage-2: <img>" + IMG_CONTEXT * 4 + "</img>\nSame colour?"
            in text)
    ids = vl_prompt_ids(tok, "Is <image> bigger than <image>?", [1, 2], 4)
    assert "Is <img>" + IMG_CONTEXT * 4 + "</img> bigger than <img>" + IMG_CONTEXT * 8 + "</img>?" in tok.decode(ids)
    assert ids.count(ctx) == 12
    with pytest.raises(ValueError, match="1 <image> placeholder"):
        vl_prompt_ids(tok, "Is <image> red?", [1, 1], 4)
    with pytest.raises(ValueError, match="image token"):
        vl_prompt_ids(tok, "Is <IMG_CONTEXT> red?", 1, 4)


def test_prompt_uses_the_models_image_id(vl_tok):
    ctx = vl_tok.token_to_id(IMG_CONTEXT)
    base = vl_prompt_ids(vl_tok, "Q?", 2, 5)
    other = next(i for i in range(vl_tok.vocab_size) if i not in base)
    ids = vl_prompt_ids(vl_tok, "Q?", 2, 5, image_token_id=other)
    assert ids == [other if i == ctx else i for i in base]


def test_prompt_needs_image_tokens():
    tok = train_bpe([english_text(50_000)], vocab_size=400)
    with pytest.raises(ValueError, match="lacks the image token"):
        vl_prompt_ids(tok, "Q?", 1, 4)


class _Scripted(torch.nn.Module):
    """Says `script` after any prompt (then <|im_end|>), and records what it was given."""

    def __init__(self, script: list[int], stop: int, vocab: int, image_token_id: int, num_image_token: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.script, self.stop, self.vocab = script, stop, vocab
        self.cfg = type("Cfg", (), dict(image_token_id=image_token_id, num_image_token=num_image_token,
                                        v2pe_inference_delta=0.25, vision=type("V", (), {"image_size": 64})))
        self.calls = []

    def forward(self, ids, pixel_values, *, position_ids=None, last_only=False):
        self.calls.append((ids.clone(), None if pixel_values is None else pixel_values.shape, position_ids))
        step = len(self.calls) - 1
        nxt = self.script[step] if step < len(self.script) else self.stop
        logits = torch.zeros(ids.shape[0], 1, self.vocab)
        logits[:, 0, self.cfg.image_token_id] = 100.0  # banned: must never be chosen
        logits[:, 0, nxt] = 50.0
        return logits


def test_greedy_decode_stops_bans_image_token_and_uses_v2pe(vl_tok):
    tok = vl_tok
    ctx, im_end = tok.token_to_id(IMG_CONTEXT), tok.token_to_id(IM_END)
    script = tok.encode(" red")
    model = _Scripted(script, im_end, tok.vocab_size, ctx, 4)
    prompt = vl_prompt_ids(tok, "Colour?", 1, 4)
    pv = torch.zeros(1, 3, 64, 64)
    out = vl_generate.greedy_decode(model, [prompt, prompt], [pv, pv], stop_ids=tok.stop_ids, max_new_tokens=10)
    assert out == [script, script]
    assert len(model.calls) == len(script) + 1  # the last step says <|im_end|>
    ids, shape, pos = model.calls[0]
    assert shape == (2, 3, 64, 64) and ids.shape == (2, len(prompt))
    # V2PE at delta 0.25: the 4 image tokens advance the position by 1 in all.
    first = prompt.index(ctx)
    expected = [float(i) for i in range(first)] + [first - 1 + 0.25 * k for k in range(1, 5)]
    assert pos[0, :first + 4].tolist() == pytest.approx(expected)
    assert pos[0, first + 4].item() == pytest.approx(first + 1)
    with pytest.raises(ValueError, match="one length"):
        vl_generate.greedy_decode(model, [prompt, prompt[:-1]], [pv, pv], stop_ids=tok.stop_ids)


def test_greedy_decode_max_new_tokens(vl_tok):
    tok = vl_tok
    model = _Scripted([5] * 100, tok.token_to_id(IM_END), tok.vocab_size, tok.token_to_id(IMG_CONTEXT), 4)
    prompt = vl_prompt_ids(tok, "Q?", 1, 4)
    assert vl_generate.greedy_decode(model, [prompt], [torch.zeros(1, 3, 64, 64)], stop_ids=tok.stop_ids,
                                     max_new_tokens=3) == [[5, 5, 5]]


def test_vl_answer_on_a_tiny_random_internvl(vl_tok):
    from PIL import Image

    from lmforge.model.vision import InternVL, tiny_vl_config

    tok = vl_tok
    cfg = tiny_vl_config(vocab_size=tok.vocab_size, n_layers=1)
    cfg = cfg.replace(image_token_id=tok.token_to_id(IMG_CONTEXT), v2pe_inference_delta=0.5)
    torch.manual_seed(0)
    model = InternVL(cfg)
    model.init_weights(0)
    model.eval()
    red = Image.new("RGB", (64, 64), (220, 30, 30))
    wide = Image.new("RGB", (128, 64), (30, 30, 220))
    one = vl_generate.vl_answer(model, tok, red, "What colour?", max_new_tokens=4)
    assert isinstance(one, str)
    queries = [VLQuery([red], "What colour?"), VLQuery([wide], "What colour?"), VLQuery([red], "What colour?"),
               VLQuery([red, wide], "Same?")]
    answers = vl_generate.vl_answers(model, tok, queries, max_new_tokens=4, batch_size=2)
    assert len(answers) == 4
    assert answers[0] == answers[2] == one  # batching and grouping do not change greedy answers


def test_sample_decode_is_seeded_and_avoids_the_image_token(vl_tok):
    from lmforge.model.vision import InternVL, tiny_vl_config

    tok = vl_tok
    ctx = tok.token_to_id(IMG_CONTEXT)
    cfg = tiny_vl_config(vocab_size=tok.vocab_size, n_layers=1).replace(image_token_id=ctx)
    model = InternVL(cfg)
    model.init_weights(1)
    model.eval()
    prompt = vl_prompt_ids(tok, "Q?", 1, cfg.num_image_token)
    pv = torch.zeros(1, 3, 64, 64)

    def draw(seed):
        return vl_generate.sample_decode(model, [prompt] * 3, [pv] * 3, stop_ids=tok.stop_ids, max_new_tokens=6,
                                         temperature=5.0, generator=torch.Generator().manual_seed(seed))

    first = draw(0)
    assert first == draw(0) and len(first) == 3
    assert len({tuple(o) for o in first}) > 1  # hot sampling: the three rows differ
    assert all(ctx not in o and all(t not in tok.stop_ids for t in o) for o in first)
    with pytest.raises(ValueError, match="temperature"):
        vl_generate.decode(model, [prompt], [pv], stop_ids=tok.stop_ids, temperature=-1.0)
