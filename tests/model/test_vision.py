"""The vision-language model: shapes, image splicing, pixel shuffle order, V2PE positions against
their formula, gradients into the vision tower, and the text-only loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from lmforge.model.loss import IGNORE_INDEX
from lmforge.model.vision import (InternVL, VisionConfig, VLConfig, pixel_shuffle, sample_deltas, shuffle_tokens,
                                  tiny_vl_config, v2pe_position_ids)
from lmforge.model.vision.v2pe import image_runs

CFG = tiny_vl_config()
IMG = CFG.image_token_id
K = CFG.num_image_token


@pytest.fixture(scope="module")
def model():
    m = InternVL(CFG)
    m.init_weights(0)
    return m.eval()


def sequence(n_tiles_per_image, text=4, seed=0):
    """input_ids (1, T): text, then each image's tiles as one run of placeholders, text between."""
    gen = torch.Generator().manual_seed(seed)
    parts = [torch.randint(3, 100, (text,), generator=gen)]
    for tiles in n_tiles_per_image:
        parts += [torch.full((tiles * K,), IMG), torch.randint(3, 100, (text,), generator=gen)]
    return torch.cat(parts)[None]


def tiles(n, seed=0):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_tiny_config_numbers():
    assert (CFG.vision.num_patches, K, CFG.projector_in_dim) == (64, 16, 256)
    big = VLConfig(vision=VisionConfig(), llm=CFG.llm, image_token_id=5)
    assert big.num_image_token == 256  # a 448 px tile: 1,024 patches -> 256 tokens
    assert big.v2pe_deltas == tuple(1 / 2**k for k in range(9))


@pytest.mark.parametrize("changes,message", [
    (dict(image_size=60), "not divisible by patch_size"),
    (dict(dim=65), "not divisible by n_heads"),
    (dict(norm_type="batch"), "norm_type"),
])
def test_vision_config_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        CFG.vision.replace(**changes)


def test_vl_config_errors():
    with pytest.raises(ValueError, match="not divisible by 1/downsample_ratio"):
        CFG.replace(vision=CFG.vision.replace(image_size=56))  # a 7x7 grid
    with pytest.raises(ValueError, match="image_token_id"):
        CFG.replace(image_token_id=CFG.llm.vocab_size)
    with pytest.raises(ValueError, match="downsample_ratio"):
        CFG.replace(downsample_ratio=0.3)
    with pytest.raises(ValueError, match="v2pe_deltas"):
        CFG.replace(v2pe_deltas=(1.0, 2.0))


def test_shapes(model):
    ids = sequence([2, 1])
    with torch.no_grad():
        assert model.image_features(tiles(3)).shape == (3, K, CFG.llm.dim)
        assert model.embed(ids, tiles(3)).shape == (1, ids.shape[1], CFG.llm.dim)
        assert model(ids, tiles(3)).shape == (1, ids.shape[1], CFG.llm.vocab_size)
        assert model(ids, tiles(3), last_only=True).shape == (1, 1, CFG.llm.vocab_size)
        assert model(sequence([])).shape[1] == 4  # text only, no pixel_values
    assert len(model.blocks()) == CFG.vision.n_layers + CFG.llm.n_layers


def test_features_are_spliced_in_order(model):
    # row 0: two one-tile images; row 1: one two-tile image, padded with text to the same length
    second = torch.cat([sequence([2], seed=2), torch.full((1, 4), 7)], dim=1)
    ids = torch.cat([sequence([1, 1], seed=1), second])
    px = tiles(4)
    with torch.no_grad():
        h, feats = model.embed(ids, px), model.image_features(px)
        text = model.language_model.tok_embeddings(ids)
    mask = ids == IMG
    assert torch.equal(h[mask], feats.reshape(-1, CFG.llm.dim))  # row-major, tile after tile
    assert torch.equal(h[~mask], text[~mask])


def test_image_token_count_mismatch_is_a_clear_error(model):
    ids = sequence([2])
    with pytest.raises(ValueError, match=rf"{2 * K} image tokens.*{3 * K} image features"):
        model.embed(ids, tiles(3))
    with pytest.raises(ValueError, match=rf"{2 * K} image tokens.*0 tile"):
        model(ids)


def test_pixel_values_change_the_logits(model):
    ids = sequence([1])
    with torch.no_grad():
        a, b = model(ids, tiles(1, seed=0)), model(ids, tiles(1, seed=1))
    T0 = 4  # the text before the image sees no image
    assert torch.equal(a[:, :T0], b[:, :T0])
    assert (a[:, T0:] - b[:, T0:]).abs().max() > 1e-4


def test_pixel_shuffle_matches_transformers():
    internvl = pytest.importorskip("transformers.models.internvl.modeling_internvl")
    x = torch.randn(2, 8, 8, 12)
    theirs = internvl.InternVLModel.pixel_shuffle(None, x, scale_factor=0.5)
    assert torch.equal(pixel_shuffle(x, 0.5), theirs)
    tokens = torch.randn(1, 32 * 32, 4)  # a 448 px tile: 1,024 patches -> 256 tokens of 4x width
    assert shuffle_tokens(tokens).shape == (1, 256, 16)


def test_pixel_shuffle_groups_2x2_neighbours():
    """Each output token holds exactly the features of one 2x2 square of the input grid."""
    side, c = 4, 1
    grid = torch.arange(side * side, dtype=torch.float32).view(1, side, side, c)
    out = pixel_shuffle(grid, 0.5)
    for i in range(2):
        for j in range(2):
            square = grid[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].flatten()
            assert sorted(out[0, i, j].tolist()) == sorted(square.tolist())


def v2pe_reference(ids, image_token_id, deltas, docs=None):
    """The V2PE formula token by token: p = 0 at each document start, then +1 per text token and
    +delta of its image per image token; a new image at each run of image tokens; text after an
    image resumes at ceil(last image position) + 1 (the V2PE reference code)."""
    out = torch.zeros(ids.shape, dtype=torch.float64)
    image = -1
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            is_img = ids[b, t] == image_token_id
            new_doc = t == 0 or (docs is not None and docs[b, t] != docs[b, t - 1])
            if is_img and (new_doc or ids[b, t - 1] != image_token_id):
                image += 1
            if new_doc:
                out[b, t] = 0.0
            elif is_img:
                out[b, t] = out[b, t - 1] + (deltas if isinstance(deltas, float) else deltas[image])
            else:
                out[b, t] = math.ceil(out[b, t - 1]) + 1.0
    return out.float()


def test_v2pe_delta_one_is_plain_positions():
    ids = torch.cat([sequence([1, 2], seed=3), sequence([2, 1], seed=4)])
    assert torch.equal(v2pe_position_ids(ids, IMG, 1.0), torch.arange(ids.shape[1]).float().expand_as(ids))


@pytest.mark.parametrize("deltas", [0.25, 1 / 256, [1 / 2, 1 / 256, 1 / 8, 1.0], [1 / 32, 1 / 64, 1 / 128, 1 / 256]])
def test_v2pe_matches_formula(deltas):
    ids = torch.cat([sequence([1, 2], seed=3), sequence([2, 1], seed=4)])
    pos = v2pe_position_ids(ids, IMG, deltas)
    assert torch.allclose(pos, v2pe_reference(ids, IMG, deltas), atol=1e-6, rtol=0)
    # after the first image of 16 tokens, the text resumes ceil(16 * delta) + 1 later
    d0 = deltas if isinstance(deltas, float) else deltas[0]
    assert pos[0, 4 + K - 1].item() == pytest.approx(3 + K * d0)
    assert pos[0, 4 + K].item() == 3 + math.ceil(K * d0) + 1


def test_v2pe_restarts_per_document_and_cuts_runs():
    ids = sequence([2, 1], seed=5)
    T = ids.shape[1]
    docs = torch.zeros_like(ids)
    docs[:, 4 + K:] = 1  # a document boundary inside the first image's run
    docs[:, T - 3:] = 2
    deltas = [0.5, 0.25, 0.125]  # the cut run counts as two images
    pos = v2pe_position_ids(ids, IMG, deltas, document_ids=docs)
    assert torch.allclose(pos, v2pe_reference(ids, IMG, deltas, docs), atol=1e-6, rtol=0)
    assert pos[0, 4 + K].item() == 0.0 and pos[0, T - 3].item() == 0.0
    with pytest.raises(ValueError, match="2 V2PE delta.*3 image"):
        v2pe_position_ids(ids, IMG, [0.5, 0.5], document_ids=docs)


def test_sample_deltas():
    gen = torch.Generator().manual_seed(0)
    d = sample_deltas(200, CFG.v2pe_deltas, gen)
    assert len(d) == 200 and set(d) <= set(CFG.v2pe_deltas) and len(set(d)) > 5
    assert sample_deltas(5, CFG.v2pe_deltas, torch.Generator().manual_seed(1)) == \
        sample_deltas(5, CFG.v2pe_deltas, torch.Generator().manual_seed(1))


def test_v2pe_positions_reach_rope(model):
    ids = sequence([1, 1])
    px = tiles(2)
    pos = v2pe_position_ids(ids, IMG, 0.25)
    with torch.no_grad():
        plain, v2pe = model(ids, px), model(ids, px, position_ids=pos)
        fixed = InternVL(CFG.replace(v2pe_inference_delta=0.25))
        fixed.load_state_dict(model.state_dict())
        assert torch.equal(fixed(ids, px), v2pe)  # the config's inference delta is the default
    assert (plain - v2pe).abs().max() > 1e-4


def test_text_only_loss_and_gradients_reach_the_vision_tower(model):
    ids = sequence([1, 1], seed=7)
    px = tiles(2)
    targets = torch.roll(ids, -1, dims=1)
    targets[:, -1] = IGNORE_INDEX
    targets[targets == IMG] = IGNORE_INDEX  # the loss is on text tokens only
    model.train()
    try:
        model.zero_grad()
        pos = v2pe_position_ids(ids, IMG, sample_deltas(2, CFG.v2pe_deltas, torch.Generator().manual_seed(0)))
        loss, _ = model(ids, px, position_ids=pos, targets=targets)
        loss.backward()
        with torch.no_grad():
            logits = model(ids, px, position_ids=pos)
        expected = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
        assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
        for name, p in list(model.vision_model.named_parameters()) + list(model.mlp1.named_parameters()):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_init_weights_is_reproducible():
    a, b = InternVL(CFG), InternVL(CFG)
    a.init_weights(3)
    b.init_weights(3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.all(a.vision_model.encoder.layer[0].lambda_1 == CFG.vision.layer_scale_init)


@pytest.mark.parametrize("seed", range(5))
def test_v2pe_matches_formula_on_random_packs(seed):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 3, (3, 80), generator=gen)
    ids = torch.where(ids == 0, torch.full_like(ids, IMG), ids + 10)  # runs of 1..n image tokens
    docs = torch.randint(0, 6, (3, 80), generator=gen).sort(dim=1).values
    n_images = int(image_runs(ids, IMG, docs)[1].max()) + 1
    deltas = sample_deltas(n_images, CFG.v2pe_deltas, gen)
    pos = v2pe_position_ids(ids, IMG, deltas, document_ids=docs)
    assert torch.allclose(pos, v2pe_reference(ids, IMG, deltas, docs), atol=1e-5, rtol=0)


def test_kv_cache_prefill_with_images_then_decode(model):
    """Keyword arguments reach InternLM2.forward_hidden: an image prefill into a KV cache, then a text
    step, gives the logits of one full pass (integer positions: the cache decides them)."""
    from lmforge.generate.kv_cache import KVCache

    ids, px = sequence([1, 1], seed=9), tiles(2, seed=9)
    T = ids.shape[1]
    cache = KVCache(CFG.llm, batch_size=1, max_len=T)
    with torch.no_grad():
        full = model(ids, px)
        model(ids[:, :-1], px, kv_cache=cache)
        step = model(ids[:, -1:], kv_cache=cache)
    assert (step[:, 0] - full[:, -1]).abs().max() <= 1e-5
