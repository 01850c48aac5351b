"""Vision-language training rows: image tokens in the text, tiles in the order of their runs, V2PE
positions per image, samples never cut, and the loader's exact resume."""

import pytest
import torch

from lmforge.model.loss import IGNORE_INDEX
from lmforge.tokenizer import IMAGE_TOKENS, train_bpe
from lmforge.tokenizer.special import IMG_CONTEXT, IMG_END, IMG_START
from lmforge.vl.rows import VLLoader, caption_sample, conversation_sample, image_text, text_sample, vl_batch

K = 4  # image tokens per tile


@pytest.fixture(scope="module")
def tok():
    return train_bpe(["a red circle on the left. what colour is the shape? red blue green"] * 20, 320,
                     extra_special_tokens=IMAGE_TOKENS)


def tiles(n: int, value: float) -> torch.Tensor:
    return torch.full((n, 3, 8, 8), value)


def test_caption_sample_learns_the_caption_only(tok):
    s = caption_sample(tok, tiles(2, 0.0), "a red circle", K)
    img = tok.token_to_id(IMG_CONTEXT)
    assert s.enc.ids.count(img) == 2 * K and s.n_tiles == 2
    assert s.enc.ids[:3] == [tok.bos_id, tok.token_to_id(IMG_START), img]
    learned = [i for i, m in zip(s.enc.ids, s.enc.mask) if m]
    assert tok.decode(learned[:-1]) == "a red circle" and learned[-1] == tok.eos_id
    assert not any(m for i, m in zip(s.enc.ids, s.enc.mask) if i in (img, tok.token_to_id(IMG_END)))


def test_conversation_placeholders_become_images_in_order(tok):
    msgs = [{"role": "user", "content": "<image>\nand <image>\nwhat colour?"}, {"role": "assistant", "content": "red"}]
    s = conversation_sample(tok, msgs, [tiles(1, 1.0), tiles(2, 2.0)], K)
    assert s.enc.ids.count(tok.token_to_id(IMG_CONTEXT)) == 3 * K
    assert s.pixels[:, 0, 0, 0].tolist() == [1.0, 2.0, 2.0]
    text = tok.decode(s.enc.ids)
    assert text.count(image_text(1, K)) == 1 and image_text(2, K) in text
    assert tok.decode([i for i, m in zip(s.enc.ids, s.enc.mask) if m]).startswith("red")
    with pytest.raises(ValueError, match="2 <image> placeholder"):
        conversation_sample(tok, msgs, [tiles(1, 1.0)], K)


def test_batch_tiles_follow_the_rows_and_v2pe_restarts_per_document(tok):
    img = tok.token_to_id(IMG_CONTEXT)
    a = caption_sample(tok, tiles(1, 1.0), "red", K)
    b = caption_sample(tok, tiles(1, 2.0), "blue", K)
    c = text_sample([5, 6, 7, 8])
    samples = [a, b, c]
    batch = vl_batch(samples, [[2, 1], [0]], 40, 0, img, 0.5)
    assert batch.pixel_values[:, 0, 0, 0].tolist() == [2.0, 1.0]  # row 0 holds b, row 1 holds a
    pos, docs = batch.position_ids, batch.document_ids
    first_b = len(c.enc.ids)  # b starts after the text sample: its positions restart at 0
    assert pos[0, first_b] == 0 and docs[0, first_b] == 1
    run = (batch.input_ids[1] == img).nonzero().flatten()
    steps = pos[1, run[1:]] - pos[1, run[:-1]]
    assert torch.allclose(steps, torch.full_like(steps, 0.5))  # image tokens advance by delta
    assert pos[0, 3] - pos[0, 2] == 1  # text tokens by 1
    assert (batch.targets[batch.input_ids == img] == IGNORE_INDEX).all()  # no loss on predicting image slots' successors
    assert torch.equal(batch.model_inputs()["pixel_values"], batch.pixel_values)


def test_loader_drops_samples_that_would_lose_image_tokens_and_resumes_exactly(tok):
    img = tok.token_to_id(IMG_CONTEXT)
    samples = [caption_sample(tok, tiles(1, float(i)), "red blue" * (i % 3 + 1), K) for i in range(12)]
    samples.append(caption_sample(tok, tiles(8, 9.0), "too long", K))  # 32 image tokens > a row of 25
    loader = VLLoader(samples, 24, 4, 2, img, [1.0, 0.5, 0.25], seed=3)
    assert loader.too_long == 1
    for _ in range(2):
        loader.next_step()
    state = loader.state_dict()
    want = loader.next_step()
    again = VLLoader(samples, 24, 4, 2, img, [1.0, 0.5, 0.25], seed=3)
    again.load_state_dict(state)
    got = again.next_step()
    for w, g in zip(want, got):
        assert torch.equal(w.input_ids, g.input_ids) and torch.equal(w.pixel_values, g.pixel_values)
        assert torch.equal(w.position_ids, g.position_ids)  # the same V2PE deltas drawn
    with pytest.raises(ValueError, match="none of the 1 samples fits"):
        VLLoader(samples[-1:], 24, 4, 2, img, 1.0)
